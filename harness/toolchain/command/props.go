package main

import (
	"fmt"
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"google.golang.org/protobuf/types/known/structpb"
)

// marshalOpts keeps secrets, unknowns and resource references in both directions, so the secretness of
// inputs (connection, stdin) survives into the outputs and previews can return unknowns.
var marshalOpts = plugin.MarshalOptions{KeepSecrets: true, KeepUnknowns: true, KeepResources: true}

func unmarshal(label string, s *structpb.Struct) (resource.PropertyMap, error) {
	if s == nil {
		return resource.PropertyMap{}, nil
	}
	opts := marshalOpts
	opts.Label = label
	return plugin.UnmarshalProperties(s, opts)
}

func marshal(label string, m resource.PropertyMap) (*structpb.Struct, error) {
	opts := marshalOpts
	opts.Label = label
	return plugin.MarshalProperties(m, opts)
}

// unwrap strips secret wrappers (and known output wrappers) from a value.
func unwrap(v resource.PropertyValue) resource.PropertyValue {
	for {
		switch {
		case v.IsSecret():
			v = v.SecretValue().Element
		case v.IsOutput() && v.OutputValue().Known:
			v = v.OutputValue().Element
		default:
			return v
		}
	}
}

// stripSecrets removes secret wrappers deeply, so that a secret "x" compares equal to "x".
func stripSecrets(v resource.PropertyValue) resource.PropertyValue {
	v = unwrap(v)
	switch {
	case v.IsArray():
		arr := make([]resource.PropertyValue, len(v.ArrayValue()))
		for i, e := range v.ArrayValue() {
			arr[i] = stripSecrets(e)
		}
		return resource.NewArrayProperty(arr)
	case v.IsObject():
		obj := resource.PropertyMap{}
		for k, e := range v.ObjectValue() {
			obj[k] = stripSecrets(e)
		}
		return resource.NewObjectProperty(obj)
	}
	return v
}

// getString returns a string input; ok is false when it is absent, null or not a known string.
func getString(m resource.PropertyMap, key string) (string, bool) {
	v, has := m[resource.PropertyKey(key)]
	if !has {
		return "", false
	}
	v = unwrap(v)
	if !v.IsString() {
		return "", false
	}
	return v.StringValue(), true
}

func getBool(m resource.PropertyMap, key string, def bool) bool {
	v, has := m[resource.PropertyKey(key)]
	if !has {
		return def
	}
	v = unwrap(v)
	if !v.IsBool() {
		return def
	}
	return v.BoolValue()
}

func getInt(m resource.PropertyMap, key string, def int) int {
	v, has := m[resource.PropertyKey(key)]
	if !has {
		return def
	}
	v = unwrap(v)
	if !v.IsNumber() {
		return def
	}
	return int(v.NumberValue())
}

// getStringMap reads a map of strings (environment); values must be known strings.
func getStringMap(m resource.PropertyMap, key string) (map[string]string, error) {
	out := map[string]string{}
	v, has := m[resource.PropertyKey(key)]
	if !has {
		return out, nil
	}
	v = unwrap(v)
	if v.IsNull() {
		return out, nil
	}
	if !v.IsObject() {
		return nil, fmt.Errorf("%s must be a map of strings", key)
	}
	for k, e := range v.ObjectValue() {
		e = unwrap(e)
		if !e.IsString() {
			return nil, fmt.Errorf("%s.%s must be a string", key, k)
		}
		out[string(k)] = e.StringValue()
	}
	return out, nil
}

// valuesEqual compares two inputs ignoring secret wrapping; anything unknown counts as changed.
func valuesEqual(a, b resource.PropertyValue) bool {
	if a.ContainsUnknowns() || b.ContainsUnknowns() {
		return false
	}
	a, b = stripSecrets(a), stripSecrets(b)
	if a.IsNull() || b.IsNull() {
		return a.IsNull() && b.IsNull()
	}
	return a.DeepEquals(b)
}

func sortedKeys(ms ...resource.PropertyMap) []resource.PropertyKey {
	seen := map[resource.PropertyKey]bool{}
	var keys []resource.PropertyKey
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
