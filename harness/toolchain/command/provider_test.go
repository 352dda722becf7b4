package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/archive"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/asset"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// ---- a real sshd on 127.0.0.1 -------------------------------------------------------------------------

type sshServer struct {
	dir, user    string
	port         int
	hostKeyLine  string // "ssh-ed25519 AAAA..."
	clientKey    string // OpenSSH private key
	otherHostKey string
}

func keygen(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
}

func readPub(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	return f[0] + " " + f[1]
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startSSHD(t *testing.T) *sshServer {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	if _, err := os.Stat(sshd); err != nil {
		t.Skip("sshd not installed (apt-get install -y openssh-server)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the sshd test server needs root")
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &sshServer{dir: dir, user: u.Username, port: freePort(t)}
	keygen(t, filepath.Join(dir, "host"))
	keygen(t, filepath.Join(dir, "other_host"))
	keygen(t, filepath.Join(dir, "client"))
	s.hostKeyLine = readPub(t, filepath.Join(dir, "host.pub"))
	s.otherHostKey = readPub(t, filepath.Join(dir, "other_host.pub"))
	ck, _ := os.ReadFile(filepath.Join(dir, "client"))
	s.clientKey = string(ck)
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(readPub(t, filepath.Join(dir, "client.pub"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile %s
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AcceptEnv FORGE_* PULUMI_COMMAND_*
`, s.port, filepath.Join(dir, "host"), filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "sshd.pid"))
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sshd, "-D", "-e", "-f", cfgPath)
	logf, _ := os.Create(filepath.Join(dir, "sshd.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Logf("sshd log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Fatalf("sshd did not start: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connection as the Node SDK sends it: a secret object with the SDK-side defaults applied.
func (s *sshServer) conn(extra map[string]any) resource.PropertyValue {
	m := map[string]any{
		"host": "127.0.0.1", "port": float64(s.port), "user": s.user, "privateKey": s.clientKey,
		"hostKey": s.hostKeyLine, "dialErrorLimit": float64(3), "perDialTimeout": float64(5),
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return resource.MakeSecret(resource.NewPropertyValue(m))
}

// ---- provider driving helpers ----------------------------------------------------------------------------

type logRec struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRec) log(_ context.Context, sev diag.Severity, _ resource.URN, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, string(sev)+": "+msg)
}

func (l *logRec) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.msgs, "\n")
}

func (l *logRec) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = nil
}

const (
	cmdURN  = "urn:pulumi:test::forge-edge::command:remote:Command::step"
	copyURN = "urn:pulumi:test::forge-edge::command:remote:CopyToRemote::copy"
)

func mustMarshal(t *testing.T, m resource.PropertyMap) *structpb.Struct {
	t.Helper()
	s, err := marshal("test", m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustUnmarshal(t *testing.T, s *structpb.Struct) resource.PropertyMap {
	t.Helper()
	m, err := unmarshal("test", s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func check(t *testing.T, p *commandProvider, urn string, news resource.PropertyMap) resource.PropertyMap {
	t.Helper()
	resp, err := p.Check(context.Background(), &pulumirpc.CheckRequest{Urn: urn, News: mustMarshal(t, news)})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Failures) > 0 {
		t.Fatalf("check failures: %v", resp.Failures)
	}
	return mustUnmarshal(t, resp.Inputs)
}

func create(p *commandProvider, t *testing.T, urn string, in resource.PropertyMap, preview bool) (string, resource.PropertyMap, error) {
	t.Helper()
	resp, err := p.Create(context.Background(), &pulumirpc.CreateRequest{Urn: urn, Properties: mustMarshal(t, in), Preview: preview})
	if err != nil {
		return "", nil, err
	}
	return resp.Id, mustUnmarshal(t, resp.Properties), nil
}

func diff(t *testing.T, p *commandProvider, urn string, olds, news resource.PropertyMap) *pulumirpc.DiffResponse {
	t.Helper()
	resp, err := p.Diff(context.Background(), &pulumirpc.DiffRequest{Urn: urn, Id: "x", Olds: mustMarshal(t, olds), News: mustMarshal(t, news)})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func str(t *testing.T, m resource.PropertyMap, k string) string {
	t.Helper()
	v, ok := m[resource.PropertyKey(k)]
	if !ok || !v.IsString() {
		t.Fatalf("%s: want a plain string, got %v", k, v)
	}
	return v.StringValue()
}

// ---- tests -----------------------------------------------------------------------------------------------

func TestPluginInfoAndSchema(t *testing.T) {
	p := newProvider((&logRec{}).log)
	info, err := p.GetPluginInfo(context.Background(), &emptypb.Empty{})
	if err != nil || info.Version != "1.2.1" {
		t.Fatalf("GetPluginInfo = %v, %v", info, err)
	}
	s, err := p.GetSchema(context.Background(), &pulumirpc.GetSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Name, Version string
		Resources     map[string]any
	}
	if err := json.Unmarshal([]byte(s.Schema), &schema); err != nil {
		t.Fatal(err)
	}
	if schema.Name != "command" || schema.Version != "1.2.1" || schema.Resources[tokCommand] == nil || schema.Resources[tokCopyToRemote] == nil {
		t.Fatalf("schema: %+v", schema)
	}
	cfg, err := p.Configure(context.Background(), &pulumirpc.ConfigureRequest{AcceptSecrets: true})
	if err != nil || !cfg.AcceptSecrets || !cfg.SupportsPreview {
		t.Fatalf("Configure = %v, %v", cfg, err)
	}
}

func TestCheckDefaultsAndDiff(t *testing.T) {
	p := newProvider((&logRec{}).log)
	in := resource.PropertyMap{
		"connection": resource.MakeSecret(resource.NewPropertyValue(map[string]any{"host": "10.0.0.1"})),
		"create":     resource.NewStringProperty("true"),
	}
	checked := check(t, p, cmdURN, in)
	if !checked["connection"].IsSecret() {
		t.Fatalf("connection lost its secretness: %v", checked["connection"])
	}
	c := checked["connection"].SecretValue().Element.ObjectValue()
	if c["user"].StringValue() != "root" || c["port"].NumberValue() != 22 || c["dialErrorLimit"].NumberValue() != 10 ||
		c["perDialTimeout"].NumberValue() != 15 {
		t.Fatalf("connection defaults: %v", c)
	}
	if !checked["addPreviousOutputInEnv"].BoolValue() {
		t.Fatal("addPreviousOutputInEnv default")
	}
	bad, err := p.Check(context.Background(), &pulumirpc.CheckRequest{Urn: cmdURN, News: mustMarshal(t, resource.PropertyMap{
		"logging": resource.NewStringProperty("loud"),
	})})
	if err != nil || len(bad.Failures) != 2 {
		t.Fatalf("want 2 failures (connection, logging), got %v %v", bad, err)
	}

	// Same values, secret on one side only: no change.
	olds := checked.Copy()
	olds["stdout"] = resource.NewStringProperty("out")
	olds["triggers"] = resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("a")})
	news := checked.Copy()
	news["connection"] = checked["connection"].SecretValue().Element
	news["triggers"] = resource.NewArrayProperty([]resource.PropertyValue{resource.MakeSecret(resource.NewStringProperty("a"))})
	if d := diff(t, p, cmdURN, olds, news); d.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("want no diff, got %v", d)
	}
	// create changes: update.
	news2 := news.Copy()
	news2["create"] = resource.NewStringProperty("false")
	d := diff(t, p, cmdURN, olds, news2)
	if d.Changes != pulumirpc.DiffResponse_DIFF_SOME || len(d.Replaces) != 0 || d.DetailedDiff["create"].GetKind() != pulumirpc.PropertyDiff_UPDATE {
		t.Fatalf("want update of create, got %v", d)
	}
	// stdin added: update.
	news3 := news.Copy()
	news3["stdin"] = resource.MakeSecret(resource.NewStringProperty("tok"))
	if d := diff(t, p, cmdURN, olds, news3); d.DetailedDiff["stdin"].GetKind() != pulumirpc.PropertyDiff_ADD || len(d.Replaces) != 0 {
		t.Fatalf("want stdin add, got %v", d)
	}
	// triggers change (or become unknown): replace.
	for _, tr := range []resource.PropertyValue{
		resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("b")}),
		resource.MakeComputed(resource.NewStringProperty("")),
	} {
		news4 := news.Copy()
		news4["triggers"] = tr
		d := diff(t, p, cmdURN, olds, news4)
		if len(d.Replaces) != 1 || d.Replaces[0] != "triggers" || d.DetailedDiff["triggers"].GetKind() != pulumirpc.PropertyDiff_UPDATE_REPLACE {
			t.Fatalf("want replace on triggers, got %v", d)
		}
	}
}

func TestCommandLifecycle(t *testing.T) {
	s := startSSHD(t)
	logs := &logRec{}
	p := newProvider(logs.log)
	marker := filepath.Join(s.dir, "deleted")
	in := check(t, p, cmdURN, resource.PropertyMap{
		"connection":  s.conn(nil),
		"create":      resource.NewStringProperty(`read -r tok; echo "got:$tok:$FORGE_X"; echo warn >&2`),
		"update":      resource.NewStringProperty(`echo "prev=$PULUMI_COMMAND_STDOUT"`),
		"delete":      resource.NewStringProperty(`echo "$PULUMI_COMMAND_STDOUT" > ` + marker),
		"stdin":       resource.MakeSecret(resource.NewStringProperty("s3cret\n")),
		"environment": resource.NewPropertyValue(map[string]any{"FORGE_X": "x1"}),
	})

	// Preview: nothing runs, stdout/stderr unknown.
	_, prev, err := create(p, t, cmdURN, in, true)
	if err != nil {
		t.Fatal(err)
	}
	if !prev["stdout"].IsComputed() || !prev["stderr"].IsComputed() || logs.all() != "" {
		t.Fatalf("preview: %v, logs %q", prev, logs.all())
	}

	id, outs, err := create(p, t, cmdURN, in, false)
	if err != nil {
		t.Fatal(err)
	}
	if id == "" {
		t.Fatal("empty id")
	}
	if got := str(t, outs, "stdout"); got != "got:s3cret:x1" {
		t.Fatalf("stdout = %q", got)
	}
	if got := str(t, outs, "stderr"); got != "warn" {
		t.Fatalf("stderr = %q", got)
	}
	if !outs["connection"].IsSecret() || !outs["stdin"].IsSecret() {
		t.Fatalf("secret inputs must stay secret in outputs: %v", outs)
	}
	if l := logs.all(); !strings.Contains(l, "info: got:s3cret:x1") || !strings.Contains(l, "info: warn") {
		t.Fatalf("output not logged: %q", l)
	}

	// Update: runs `update`, with the previous stdout in the environment.
	news := in.Copy()
	news["update"] = resource.NewStringProperty(`echo "prev=$PULUMI_COMMAND_STDOUT"; echo again`)
	up, err := p.Update(context.Background(), &pulumirpc.UpdateRequest{Urn: cmdURN, Id: id,
		Olds: mustMarshal(t, outs), News: mustMarshal(t, news)})
	if err != nil {
		t.Fatal(err)
	}
	upOuts := mustUnmarshal(t, up.Properties)
	if got := str(t, upOuts, "stdout"); got != "prev=got:s3cret:x1\nagain" {
		t.Fatalf("update stdout = %q", got)
	}
	// Preview update: unknown outputs.
	pu, err := p.Update(context.Background(), &pulumirpc.UpdateRequest{Urn: cmdURN, Id: id,
		Olds: mustMarshal(t, outs), News: mustMarshal(t, news), Preview: true})
	if err != nil || !mustUnmarshal(t, pu.Properties)["stdout"].IsComputed() {
		t.Fatalf("preview update: %v %v", pu, err)
	}

	// Read returns the state unchanged.
	rd, err := p.Read(context.Background(), &pulumirpc.ReadRequest{Urn: cmdURN, Id: id, Properties: up.Properties})
	if err != nil || rd.Id != id || !mustUnmarshal(t, rd.Properties).DeepEquals(upOuts) {
		t.Fatalf("read: %v %v", rd, err)
	}

	// Delete: runs the stored delete command (with the stored stdout in the environment).
	if _, err := p.Delete(context.Background(), &pulumirpc.DeleteRequest{Urn: cmdURN, Id: id, Properties: up.Properties}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(marker)
	if err != nil || string(b) != "prev=got:s3cret:x1\nagain\n" {
		t.Fatalf("delete marker: %q %v", b, err)
	}

	// Update without `update` re-runs `create`; addPreviousOutputInEnv=false keeps the variable out.
	news2 := in.Copy()
	delete(news2, "update")
	news2["create"] = resource.NewStringProperty(`echo "c:${PULUMI_COMMAND_STDOUT:-none}"`)
	news2["addPreviousOutputInEnv"] = resource.NewBoolProperty(false)
	up2, err := p.Update(context.Background(), &pulumirpc.UpdateRequest{Urn: cmdURN, Id: id,
		Olds: mustMarshal(t, outs), News: mustMarshal(t, news2)})
	if err != nil {
		t.Fatal(err)
	}
	if got := str(t, mustUnmarshal(t, up2.Properties), "stdout"); got != "c:none" {
		t.Fatalf("update-via-create stdout = %q", got)
	}

	// An environment variable the server refuses is an error.
	bad := in.Copy()
	bad["environment"] = resource.NewPropertyValue(map[string]any{"NOT_ACCEPTED": "1"})
	if _, _, err := create(p, t, cmdURN, bad, false); err == nil || !strings.Contains(err.Error(), `"NOT_ACCEPTED"`) {
		t.Fatalf("want refused environment error, got %v", err)
	}
}

func TestExitStatusError(t *testing.T) {
	s := startSSHD(t)
	logs := &logRec{}
	p := newProvider(logs.log)
	in := check(t, p, cmdURN, resource.PropertyMap{
		"connection": s.conn(nil),
		"create":     resource.NewStringProperty(`echo visible-out; echo visible-err >&2; exit 3`),
	})
	_, _, err := create(p, t, cmdURN, in, false)
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	for _, want := range []string{"Process exited with status 3", `running "echo visible-out;`, "visible-out", "visible-err"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error %q lacks %q", msg, want)
		}
	}

	// logging "none": nothing of the output in the logs or in the error.
	logs.reset()
	in["logging"] = resource.NewStringProperty("none")
	_, _, err = create(p, t, cmdURN, in, false)
	if err == nil || !strings.Contains(err.Error(), "Process exited with status 3") || strings.Contains(err.Error(), "\nvisible") {
		t.Fatalf("logging none error: %v", err)
	}
	if strings.Contains(logs.all(), "visible") {
		t.Fatalf("logging none leaked output to logs: %q", logs.all())
	}
	// ...but a successful run still returns the output.
	in["create"] = resource.NewStringProperty(`echo kubeconfig-data`)
	_, outs, err := create(p, t, cmdURN, in, false)
	if err != nil || str(t, outs, "stdout") != "kubeconfig-data" || strings.Contains(logs.all(), "kubeconfig-data") {
		t.Fatalf("logging none success: %v %v %q", outs, err, logs.all())
	}

	// logging "stderr": only stderr is logged.
	logs.reset()
	in["logging"] = resource.NewStringProperty("stderr")
	in["create"] = resource.NewStringProperty(`echo only-out; echo only-err >&2`)
	if _, _, err := create(p, t, cmdURN, in, false); err != nil {
		t.Fatal(err)
	}
	if l := logs.all(); strings.Contains(l, "only-out") || !strings.Contains(l, "only-err") {
		t.Fatalf("logging stderr: %q", l)
	}
}

func TestWrongHostKeyRefused(t *testing.T) {
	s := startSSHD(t)
	logs := &logRec{}
	p := newProvider(logs.log)
	in := check(t, p, cmdURN, resource.PropertyMap{
		"connection": s.conn(map[string]any{"hostKey": s.otherHostKey, "dialErrorLimit": float64(2)}),
		"create":     resource.NewStringProperty(`touch ` + filepath.Join(s.dir, "must-not-exist")),
	})
	_, _, err := create(p, t, cmdURN, in, false)
	if err == nil || !strings.Contains(err.Error(), "host key mismatch") {
		t.Fatalf("want host key mismatch, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "must-not-exist")); err == nil {
		t.Fatal("command ran despite the wrong host key")
	}
	if !strings.Contains(logs.all(), "Dial 1/2 failed: retrying") {
		t.Fatalf("logs: %q", logs.all())
	}
	// No hostKey: any host key is accepted.
	in2 := check(t, p, cmdURN, resource.PropertyMap{
		"connection": s.conn(map[string]any{"hostKey": nil}),
		"create":     resource.NewStringProperty(`echo ok`),
	})
	if _, outs, err := create(p, t, cmdURN, in2, false); err != nil || str(t, outs, "stdout") != "ok" {
		t.Fatalf("no hostKey: %v %v", outs, err)
	}
}

func TestUnreachableFailsWithinDialLimit(t *testing.T) {
	logs := &logRec{}
	p := newProvider(logs.log)
	port := freePort(t) // nothing listens here
	in := check(t, p, cmdURN, resource.PropertyMap{
		"connection": resource.MakeSecret(resource.NewPropertyValue(map[string]any{
			"host": "127.0.0.1", "port": float64(port), "user": "root", "dialErrorLimit": float64(3), "perDialTimeout": float64(1),
		})),
		"create": resource.NewStringProperty("true"),
	})
	start := time.Now()
	_, _, err := create(p, t, cmdURN, in, false)
	elapsed := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "after 3 attempt(s)") {
		t.Fatalf("want dial failure, got %v", err)
	}
	if elapsed > 3*time.Second+2*time.Second {
		t.Fatalf("took %v, more than dialErrorLimit x perDialTimeout (+ backoff)", elapsed)
	}
	if l := logs.all(); !strings.Contains(l, "Dial 1/3 failed: retrying") || !strings.Contains(l, "Dial 2/3 failed: retrying") {
		t.Fatalf("logs: %q", l)
	}
}

func TestCopyToRemote(t *testing.T) {
	s := startSSHD(t)
	p := newProvider((&logRec{}).log)
	dest := filepath.Join(s.dir, "remote")

	// StringAsset into a path whose parents do not exist yet.
	text, _ := asset.FromText("hello copy\n")
	in := check(t, p, copyURN, resource.PropertyMap{
		"connection": s.conn(nil),
		"source":     resource.NewAssetProperty(text),
		"remotePath": resource.NewStringProperty(filepath.Join(dest, "a", "b.txt")),
	})
	// Preview copies nothing.
	if _, _, err := create(p, t, copyURN, in, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("preview copied")
	}
	id, outs, err := create(p, t, copyURN, in, false)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "a", "b.txt")); err != nil || string(b) != "hello copy\n" {
		t.Fatalf("copied text: %q %v", b, err)
	}
	if st, _ := os.Stat(filepath.Join(dest, "a", "b.txt")); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
	if !outs["connection"].IsSecret() || !outs["source"].IsAsset() || id == "" {
		t.Fatalf("outputs: %v", outs)
	}

	// Changing the text: update (no replace); changing triggers: replace.
	text2, _ := asset.FromText("hello again\n")
	news := in.Copy()
	news["source"] = resource.NewAssetProperty(text2)
	news = check(t, p, copyURN, news)
	d := diff(t, p, copyURN, outs, news)
	if d.Changes != pulumirpc.DiffResponse_DIFF_SOME || len(d.Replaces) != 0 || d.DetailedDiff["source"] == nil {
		t.Fatalf("source diff: %v", d)
	}
	if d := diff(t, p, copyURN, outs, in); d.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("want no diff: %v", d)
	}
	nt := in.Copy()
	nt["triggers"] = resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("v2")})
	if d := diff(t, p, copyURN, outs, nt); len(d.Replaces) != 1 {
		t.Fatalf("triggers diff: %v", d)
	}
	if _, err := p.Update(context.Background(), &pulumirpc.UpdateRequest{Urn: copyURN, Id: id,
		Olds: mustMarshal(t, outs), News: mustMarshal(t, news)}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "a", "b.txt")); string(b) != "hello again\n" {
		t.Fatalf("updated text: %q", b)
	}

	// FileAsset (executable) into an existing directory: copied into it, mode 0755.
	local := filepath.Join(t.TempDir(), "tool.sh")
	if err := os.WriteFile(local, []byte("#!/bin/sh\necho tool\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	fa, _ := asset.FromPath(local)
	in2 := check(t, p, copyURN, resource.PropertyMap{
		"connection": s.conn(nil),
		"source":     resource.NewAssetProperty(fa),
		"remotePath": resource.NewStringProperty(filepath.Join(dest, "a")),
	})
	if _, _, err := create(p, t, copyURN, in2, false); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dest, "a", "tool.sh"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("file asset: %v %v", st, err)
	}

	// Directory FileArchive to a new path.
	srcDir := t.TempDir()
	_ = os.MkdirAll(filepath.Join(srcDir, "sub"), 0o755)
	_ = os.WriteFile(filepath.Join(srcDir, "sub", "f.txt"), []byte("in archive"), 0o644)
	ar, _ := archive.FromPath(srcDir)
	in3 := check(t, p, copyURN, resource.PropertyMap{
		"connection": s.conn(nil),
		"source":     resource.NewArchiveProperty(ar),
		"remotePath": resource.NewStringProperty(filepath.Join(dest, "tree")),
	})
	if _, _, err := create(p, t, copyURN, in3, false); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "tree", "sub", "f.txt")); err != nil || string(b) != "in archive" {
		t.Fatalf("archive copy: %q %v", b, err)
	}

	// Delete leaves the files (like the real provider).
	if _, err := p.Delete(context.Background(), &pulumirpc.DeleteRequest{Urn: copyURN, Id: id, Properties: mustMarshal(t, outs)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dest, "a", "b.txt")); err != nil {
		t.Fatal("delete removed the copied file")
	}
}

func TestSilentServerBoundedByPerDialTimeout(t *testing.T) {
	// A TCP listener that accepts and never speaks SSH: each attempt must end after perDialTimeout.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	logs := &logRec{}
	p := newProvider(logs.log)
	in := check(t, p, cmdURN, resource.PropertyMap{
		"connection": resource.MakeSecret(resource.NewPropertyValue(map[string]any{
			"host": "127.0.0.1", "port": float64(l.Addr().(*net.TCPAddr).Port), "dialErrorLimit": float64(2), "perDialTimeout": float64(1),
		})),
		"create": resource.NewStringProperty("true"),
	})
	start := time.Now()
	_, _, err = create(p, t, cmdURN, in, false)
	elapsed := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "after 2 attempt(s)") {
		t.Fatalf("want dial failure, got %v", err)
	}
	if elapsed < 2*time.Second || elapsed > 4*time.Second {
		t.Fatalf("took %v, want about dialErrorLimit x perDialTimeout = 2s", elapsed)
	}
	if !strings.Contains(logs.all(), "Dial 1/2 failed: retrying") {
		t.Fatalf("logs: %q", logs.all())
	}
}
