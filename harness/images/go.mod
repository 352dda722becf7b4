// Images built here for the real-node harness (issue 11): no registry is reachable, so the pause image and a
// fake inference server are compiled from this module (static, CGO_ENABLED=0) and packed as OCI image tarballs
// by ocitar. Standard library only. Owned by harness/build-toolchain.sh (group node).
module forge-edge/harness/images

go 1.26.0
