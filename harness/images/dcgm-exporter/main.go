// Command dcgm-exporter is the simulated site's stand-in for NVIDIA's dcgm-exporter, run by the stack's DaemonSet
// under the image name the stack uses: `-f <metrics.csv>` (the counters ConfigMap: "FIELD, type, help" lines, #
// comments), `-a :9400`; GET /metrics answers one sample per field per GPU in the Prometheus text format, labelled
// as dcgm-exporter labels them (gpu, UUID, pci_bus_id, device, modelName, Hostname). The GPUs are the ones the
// nvidia-container-runtime double exposed to the container (the GPU file, harness/doubles/nvidia-container-runtime);
// without them it exits as the real exporter does when DCGM/NVML cannot start.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
)

type gpu struct {
	Index      int    `json:"index"`
	UUID       string `json:"uuid"`
	Name       string `json:"name"`
	MemoryMiB  int    `json:"memoryMiB"`
	ComputeCap string `json:"computeCap"`
}

type gpuFile struct {
	Driver string `json:"driver"`
	GPUs   []gpu  `json:"gpus"`
}

// Field is one counter of the csv.
type Field struct{ Name, Type, Help string }

// ParseCounters reads dcgm-exporter's counters csv.
func ParseCounters(r io.Reader) ([]Field, error) {
	var out []Field
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, ",", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("line %d: want \"field, type, help\": %q", n, line)
		}
		f := Field{strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1]), strings.TrimSpace(parts[2])}
		switch f.Type {
		case "gauge", "counter", "label":
		default:
			return nil, fmt.Errorf("line %d: unknown metric type %q", n, f.Type)
		}
		if !strings.HasPrefix(f.Name, "DCGM_") {
			return nil, fmt.Errorf("line %d: unknown field %q", n, f.Name)
		}
		out = append(out, f)
	}
	return out, sc.Err()
}

// value is a plausible idle reading for a field.
func value(f string, g gpu) int {
	switch f {
	case "DCGM_FI_DEV_FB_FREE":
		return g.MemoryMiB
	case "DCGM_FI_DEV_GPU_TEMP":
		return 40
	case "DCGM_FI_DEV_POWER_USAGE":
		return 30
	case "DCGM_FI_DEV_SM_CLOCK":
		return 1500
	}
	return 0
}

// Render writes the exposition: HELP/TYPE once per field, then one sample per GPU.
func Render(w io.Writer, fields []Field, gpus []gpu, host string) {
	for _, f := range fields {
		if f.Type == "label" {
			continue
		}
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", f.Name, f.Help, f.Name, f.Type)
		for _, g := range gpus {
			fmt.Fprintf(w, "%s{gpu=\"%d\",UUID=\"%s\",pci_bus_id=\"00000000:%02X:00.0\",device=\"nvidia%d\",modelName=\"%s\",Hostname=\"%s\"} %d\n",
				f.Name, g.Index, g.UUID, g.Index+1, g.Index, g.Name, host, value(f.Name, g))
		}
	}
}

func main() {
	csv := flag.String("f", "/etc/dcgm-exporter/default-counters.csv", "counters csv")
	addr := flag.String("a", ":9400", "listen address")
	flag.Parse()
	b, err := os.Open(*csv)
	if err != nil {
		log.Fatal(err)
	}
	fields, err := ParseCounters(b)
	_ = b.Close()
	if err != nil {
		log.Fatalf("%s: %v", *csv, err)
	}
	path := os.Getenv("FORGE_NVIDIA_GPU_FILE")
	if path == "" {
		path = "/run/forge-edge/nvidia/gpus.json"
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		log.Fatal("Failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND (no GPU exposed: did the pod run with the nvidia runtime?)")
	}
	if err != nil {
		log.Fatal(err)
	}
	var gf gpuFile
	if err := json.Unmarshal(raw, &gf); err != nil {
		log.Fatalf("%s: %v", path, err)
	}
	if len(gf.GPUs) == 0 {
		log.Fatal("no GPUs found")
	}
	host, _ := os.Hostname()
	http.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		Render(w, fields, gf.GPUs, host)
	})
	http.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "OK\n") })
	log.Printf("serving %d fields for %d GPUs on %s", len(fields), len(gf.GPUs), *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
