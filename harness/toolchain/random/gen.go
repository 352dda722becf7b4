//go:build ignore

// gen.go writes the schema file cmd/pulumi-resource-random embeds: `go run gen.go VERSION`, run in
// the directory where tfgen wrote schema.json (tfgen leaves the version out), sets the schema's
// top-level "version" and writes a compact schema-embed.json.
package main

import (
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
}
