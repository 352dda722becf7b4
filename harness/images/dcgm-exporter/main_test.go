package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCountersAndRender(t *testing.T) {
	csv := "# RTX PRO 4000: note\nDCGM_FI_DEV_GPU_UTIL, gauge, GPU utilization (in %).\nDCGM_FI_DEV_FB_FREE, gauge, Framebuffer memory free (in MiB).\n"
	fields, err := ParseCounters(strings.NewReader(csv))
	if err != nil || len(fields) != 2 {
		t.Fatalf("%v %v", fields, err)
	}
	var out bytes.Buffer
	Render(&out, fields, []gpu{{Index: 0, UUID: "GPU-a", Name: "X", MemoryMiB: 100}, {Index: 1, UUID: "GPU-b", Name: "X", MemoryMiB: 100}}, "h")
	s := out.String()
	if strings.Count(s, "DCGM_FI_DEV_GPU_UTIL{") != 2 || !strings.Contains(s, "# TYPE DCGM_FI_DEV_FB_FREE gauge\n") ||
		!strings.Contains(s, `DCGM_FI_DEV_FB_FREE{gpu="1",UUID="GPU-b",pci_bus_id="00000000:02:00.0",device="nvidia1",modelName="X",Hostname="h"} 100`) {
		t.Fatal(s)
	}
	if _, err := ParseCounters(strings.NewReader("DCGM_FI_DEV_GPU_UTIL, histogram, x\n")); err == nil {
		t.Fatal("bad type accepted")
	}
}
