import { run } from "./program";

const outputs = run();

export const sku = outputs.sku;
export const endpoint = outputs.endpoint;
export const healthUrl = outputs.healthUrl;
export const kubeconfig = outputs.kubeconfig;
export const nodes = outputs.nodes;
export const gpuSlicesPerNode = outputs.gpuSlicesPerNode;
export const gpuReports = outputs.gpuReports;
export const autoscaling = outputs.autoscaling;
export const rolloutWaves = outputs.rolloutWaves;
export const sites = outputs.sites;
export const siteWaves = outputs.siteWaves;
export const skippedSites = outputs.skippedSites;
