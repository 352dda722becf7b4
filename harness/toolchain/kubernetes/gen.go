//go:build ignore

// gen.go writes the files main.go embeds: `go run gen.go VERSION` reads schema.json and
// terraform-mapping.json (copied in by build-toolchain.sh), sets the schema's top-level
// "version" and writes compact schema-embed.json and terraform-mapping-embed.json.
package main

import (
	"bytes"
	"encoding/json"
	"log"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: go run gen.go VERSION")
	}
	raw, err := os.ReadFile("schema.json")
	if err != nil {
		log.Fatal(err)
	}
	var spec map[string]json.RawMessage
	if err := json.Unmarshal(raw, &spec); err != nil {
		log.Fatalf("schema.json: %v", err)
	}
	v, _ := json.Marshal(os.Args[1])
	spec["version"] = v
	out, err := json.Marshal(spec)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("schema-embed.json", out, 0o644); err != nil {
		log.Fatal(err)
	}
	mapping, err := os.ReadFile("terraform-mapping.json")
	if err != nil {
		log.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, mapping); err != nil {
		log.Fatalf("terraform-mapping.json: %v", err)
	}
	if err := os.WriteFile("terraform-mapping-embed.json", buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}
