package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	tokCommand      = "command:remote:Command"
	tokCopyToRemote = "command:remote:CopyToRemote"
)

// logFunc sends a diagnostic to the engine (host.Log in production, a recorder in tests).
type logFunc func(ctx context.Context, sev diag.Severity, urn resource.URN, msg string)

type commandProvider struct {
	pulumirpc.UnimplementedResourceProviderServer
	log logFunc

	mu     sync.Mutex
	ctx    context.Context // cancelled by Cancel
	cancel context.CancelFunc
}

func newProvider(log logFunc) *commandProvider {
	ctx, cancel := context.WithCancel(context.Background())
	return &commandProvider{log: log, ctx: ctx, cancel: cancel}
}

// opContext is ctx bounded by the provider's cancellation and the operation's custom timeout (seconds).
func (p *commandProvider) opContext(ctx context.Context, timeout float64) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.ctx, cancel)
	if timeout > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, time.Duration(timeout*float64(time.Second)))
		return ctx, func() { c2(); stop(); cancel() }
	}
	return ctx, func() { stop(); cancel() }
}

func resourceType(urn string, typ string) string {
	if typ != "" {
		return typ
	}
	return string(resource.URN(urn).Type())
}

func unknownType(t string) error {
	return status.Errorf(codes.InvalidArgument,
		"unknown resource type %q: forge-edge's stand-in for pulumi-command v1.2.1 implements only %s and %s",
		t, tokCommand, tokCopyToRemote)
}

func (p *commandProvider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: providerVersion}, nil
}

func (p *commandProvider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: schemaJSON}, nil
}

func (p *commandProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *commandProvider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *commandProvider) Configure(ctx context.Context, _ *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	p.log(ctx, diag.Debug, "", standInNotice)
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true, AcceptResources: true}, nil
}

func (p *commandProvider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	p.cancel()
	return &emptypb.Empty{}, nil
}

func (p *commandProvider) GetMapping(context.Context, *pulumirpc.GetMappingRequest) (*pulumirpc.GetMappingResponse, error) {
	return &pulumirpc.GetMappingResponse{}, nil
}

func (p *commandProvider) GetMappings(context.Context, *pulumirpc.GetMappingsRequest) (*pulumirpc.GetMappingsResponse, error) {
	return &pulumirpc.GetMappingsResponse{}, nil
}

// Check validates the inputs and applies the provider-side defaults (connection.user/port/dial settings,
// addPreviousOutputInEnv=true for Command).
func (p *commandProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	t := resourceType(req.GetUrn(), req.GetType())
	if t != tokCommand && t != tokCopyToRemote {
		return nil, unknownType(t)
	}
	news, err := unmarshal("check.news", req.GetNews())
	if err != nil {
		return nil, err
	}
	var failures []*pulumirpc.CheckFailure
	fail := func(prop, reason string) {
		failures = append(failures, &pulumirpc.CheckFailure{Property: prop, Reason: reason})
	}

	if c, ok := news["connection"]; !ok || c.IsNull() {
		fail("connection", "missing required property 'connection'")
	} else {
		news["connection"] = connectionDefaults(c)
	}
	if t == tokCommand {
		if _, ok := news["addPreviousOutputInEnv"]; !ok {
			news["addPreviousOutputInEnv"] = resource.NewBoolProperty(true)
		}
		if l, ok := news["logging"]; ok && !l.ContainsUnknowns() && !unwrap(l).IsNull() {
			switch s, _ := getString(news, "logging"); s {
			case "stdout", "stderr", "stdoutAndStderr", "none":
			default:
				fail("logging", fmt.Sprintf("logging must be one of stdout, stderr, stdoutAndStderr, none; got %v", unwrap(l)))
			}
		}
	} else {
		for _, k := range []resource.PropertyKey{"source", "remotePath"} {
			if v, ok := news[k]; !ok || v.IsNull() {
				fail(string(k), fmt.Sprintf("missing required property '%s'", k))
			}
		}
		if v, ok := news["source"]; ok {
			// The engine normally sends hashes already; compute them when missing so Diff sees content changes.
			if a := unwrap(v); a.IsAsset() {
				_ = a.AssetValue().EnsureHash()
			} else if a.IsArchive() {
				_ = a.ArchiveValue().EnsureHash()
			}
		}
	}
	inputs, err := marshal("check.inputs", news)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: inputs, Failures: failures}, nil
}

// connectionDefaults fills the defaults of remote.Connection inside any secret wrapper.
func connectionDefaults(v resource.PropertyValue) resource.PropertyValue {
	if v.IsSecret() {
		return resource.MakeSecret(connectionDefaults(v.SecretValue().Element))
	}
	if !v.IsObject() {
		return v
	}
	o := v.ObjectValue().Copy()
	for k, d := range map[resource.PropertyKey]resource.PropertyValue{
		"user":           resource.NewStringProperty("root"),
		"port":           resource.NewNumberProperty(22),
		"dialErrorLimit": resource.NewNumberProperty(10),
		"perDialTimeout": resource.NewNumberProperty(15),
	} {
		if cur, ok := o[k]; !ok || cur.IsNull() {
			o[k] = d
		}
	}
	return resource.NewObjectProperty(o)
}

// outputOnly are the properties that are outputs, not inputs, and never take part in diffs.
var outputOnly = map[resource.PropertyKey]bool{"stdout": true, "stderr": true}

func (p *commandProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	t := resourceType(req.GetUrn(), req.GetType())
	if t != tokCommand && t != tokCopyToRemote {
		return nil, unknownType(t)
	}
	oldStruct := req.GetOldInputs()
	if oldStruct == nil || len(oldStruct.GetFields()) == 0 {
		oldStruct = req.GetOlds()
	}
	olds, err := unmarshal("diff.olds", oldStruct)
	if err != nil {
		return nil, err
	}
	news, err := unmarshal("diff.news", req.GetNews())
	if err != nil {
		return nil, err
	}
	return computeDiff(olds, news), nil
}

func computeDiff(olds, news resource.PropertyMap) *pulumirpc.DiffResponse {
	resp := &pulumirpc.DiffResponse{
		Changes:         pulumirpc.DiffResponse_DIFF_NONE,
		DetailedDiff:    map[string]*pulumirpc.PropertyDiff{},
		HasDetailedDiff: true,
	}
	for _, k := range sortedKeys(olds, news) {
		if outputOnly[k] {
			continue
		}
		o, hasOld := olds[k]
		n, hasNew := news[k]
		hasOld = hasOld && !o.IsNull()
		hasNew = hasNew && !n.IsNull()
		if !hasOld && !hasNew {
			continue
		}
		if hasOld && hasNew && valuesEqual(o, n) {
			continue
		}
		replace := k == "triggers"
		kind := pulumirpc.PropertyDiff_UPDATE
		switch {
		case !hasOld:
			kind = pulumirpc.PropertyDiff_ADD
		case !hasNew:
			kind = pulumirpc.PropertyDiff_DELETE
		}
		if replace {
			kind++ // ADD->ADD_REPLACE, DELETE->DELETE_REPLACE, UPDATE->UPDATE_REPLACE
			resp.Replaces = append(resp.Replaces, string(k))
		}
		resp.Changes = pulumirpc.DiffResponse_DIFF_SOME
		resp.Diffs = append(resp.Diffs, string(k))
		resp.DetailedDiff[string(k)] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	return resp
}

func (p *commandProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	t := resourceType(req.GetUrn(), req.GetType())
	if t != tokCommand && t != tokCopyToRemote {
		return nil, unknownType(t)
	}
	urn := resource.URN(req.GetUrn())
	news, err := unmarshal("create.news", req.GetProperties())
	if err != nil {
		return nil, err
	}
	outs := news.Copy()
	id := ""
	if !req.GetPreview() {
		if id, err = resource.NewUniqueHex(urn.Name()+"-", 8, 0); err != nil {
			return nil, err
		}
		ctx, cancel := p.opContext(ctx, req.GetTimeout())
		defer cancel()
		if t == tokCommand {
			err = p.runCommand(ctx, urn, news, "create", nil, outs)
		} else {
			err = p.copyToRemote(ctx, urn, news)
		}
		if err != nil {
			return nil, err
		}
	} else if t == tokCommand {
		outs["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
		outs["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
	}
	props, err := marshal("create.outputs", outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (p *commandProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	t := resourceType(req.GetUrn(), req.GetType())
	if t != tokCommand && t != tokCopyToRemote {
		return nil, unknownType(t)
	}
	urn := resource.URN(req.GetUrn())
	olds, err := unmarshal("update.olds", req.GetOlds())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal("update.news", req.GetNews())
	if err != nil {
		return nil, err
	}
	outs := news.Copy()
	if req.GetPreview() {
		if t == tokCommand {
			outs["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
			outs["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
		}
	} else {
		ctx, cancel := p.opContext(ctx, req.GetTimeout())
		defer cancel()
		if t == tokCommand {
			which := "update"
			if s, ok := getString(news, "update"); !ok || s == "" {
				which = "create"
			}
			err = p.runCommand(ctx, urn, news, which, olds, outs)
		} else {
			err = p.copyToRemote(ctx, urn, news)
		}
		if err != nil {
			return nil, err
		}
	}
	props, err := marshal("update.outputs", outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (p *commandProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	t := resourceType(req.GetUrn(), req.GetType())
	if t == tokCopyToRemote {
		return &emptypb.Empty{}, nil // like the real one: the copied files stay
	}
	if t != tokCommand {
		return nil, unknownType(t)
	}
	state, err := unmarshal("delete.state", req.GetProperties())
	if err != nil {
		return nil, err
	}
	if s, ok := getString(state, "delete"); !ok || s == "" {
		return &emptypb.Empty{}, nil
	}
	ctx, cancel := p.opContext(ctx, req.GetTimeout())
	defer cancel()
	if err := p.runCommand(ctx, resource.URN(req.GetUrn()), state, "delete", state, resource.PropertyMap{}); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Read returns the stored state unchanged (the real provider cannot read remote state either).
func (p *commandProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

// runCommand dials and runs the inputs' create/update/delete command, writing stdout/stderr into outs.
// prev is the previous state whose stdout/stderr go into PULUMI_COMMAND_STDOUT/STDERR (nil on create).
func (p *commandProvider) runCommand(ctx context.Context, urn resource.URN, in resource.PropertyMap,
	which string, prev resource.PropertyMap, outs resource.PropertyMap,
) error {
	cmd, ok := getString(in, which)
	if !ok || cmd == "" {
		outs["stdout"] = resource.NewStringProperty("")
		outs["stderr"] = resource.NewStringProperty("")
		return nil
	}
	conn, err := parseConnection(in)
	if err != nil {
		return err
	}
	env, err := getStringMap(in, "environment")
	if err != nil {
		return err
	}
	logging, _ := getString(in, "logging")
	spec := runSpec{cmd: cmd, env: env, logging: logging, prevEnv: map[string]string{}}
	if s, ok := getString(in, "stdin"); ok {
		spec.stdin = stringsReader(s)
	}
	if prev != nil && getBool(in, "addPreviousOutputInEnv", true) {
		if s, _ := getString(prev, "stdout"); s != "" {
			spec.prevEnv["PULUMI_COMMAND_STDOUT"] = s
		}
		if s, _ := getString(prev, "stderr"); s != "" {
			spec.prevEnv["PULUMI_COMMAND_STDERR"] = s
		}
	}
	client, err := dial(ctx, conn, func(msg string) { p.log(ctx, diag.Info, urn, msg) })
	if err != nil {
		return err
	}
	defer client.Close()
	stdout, stderr, err := runRemote(ctx, client, spec, func(sev diag.Severity, msg string) { p.log(ctx, sev, urn, msg) })
	if err != nil {
		return err
	}
	outs["stdout"] = resource.NewStringProperty(stdout)
	outs["stderr"] = resource.NewStringProperty(stderr)
	return nil
}

var errNoSource = errors.New("missing required property 'source'")
