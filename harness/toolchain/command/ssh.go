package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// connection is the remote.Connection input of pulumi-command v1.2.1.
type connection struct {
	host, user                           string
	port                                 int
	password, privateKey, privateKeyPass string
	agentSocketPath, hostKey             string
	dialErrorLimit, perDialTimeout       int
	hasProxy                             bool
}

func parseConnection(m resource.PropertyMap) (*connection, error) {
	v, ok := m["connection"]
	if !ok || unwrap(v).IsNull() {
		return nil, errors.New("missing required property 'connection'")
	}
	v = unwrap(v)
	if !v.IsObject() {
		return nil, errors.New("connection must be an object")
	}
	o := v.ObjectValue()
	c := &connection{
		port:           getInt(o, "port", 22),
		user:           "root",
		dialErrorLimit: getInt(o, "dialErrorLimit", 10),
		perDialTimeout: getInt(o, "perDialTimeout", 15),
	}
	var has bool
	if c.host, has = getString(o, "host"); !has || c.host == "" {
		return nil, errors.New("connection.host is required")
	}
	if u, has := getString(o, "user"); has && u != "" {
		c.user = u
	}
	c.password, _ = getString(o, "password")
	c.privateKey, _ = getString(o, "privateKey")
	c.privateKeyPass, _ = getString(o, "privateKeyPassword")
	c.agentSocketPath, _ = getString(o, "agentSocketPath")
	c.hostKey, _ = getString(o, "hostKey")
	if p, ok := o["proxy"]; ok && !unwrap(p).IsNull() {
		c.hasProxy = true
	}
	return c, nil
}

func (c *connection) addr() string { return net.JoinHostPort(c.host, strconv.Itoa(c.port)) }

func (c *connection) clientConfig() (*ssh.ClientConfig, io.Closer, error) {
	cfg := &ssh.ClientConfig{User: c.user, HostKeyCallback: ssh.InsecureIgnoreHostKey()}
	var closer io.Closer
	if c.privateKey != "" {
		var signer ssh.Signer
		var err error
		if c.privateKeyPass != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(c.privateKey), []byte(c.privateKeyPass))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(c.privateKey))
		}
		if err != nil {
			// Never echo the key itself.
			return nil, nil, fmt.Errorf("could not parse connection.privateKey: %w", err)
		}
		cfg.Auth = append(cfg.Auth, ssh.PublicKeys(signer))
	}
	if c.password != "" {
		pw := c.password
		cfg.Auth = append(cfg.Auth, ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
				answers := make([]string, len(qs))
				for i := range qs {
					answers[i] = pw
				}
				return answers, nil
			}))
	}
	sock := c.agentSocketPath
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" {
		ac, err := net.Dial("unix", sock)
		if err != nil {
			if c.agentSocketPath != "" {
				return nil, nil, fmt.Errorf("could not connect to SSH agent at %s: %w", sock, err)
			}
		} else {
			closer = ac
			cfg.Auth = append(cfg.Auth, ssh.PublicKeysCallback(agent.NewClient(ac).Signers))
		}
	}
	if c.hostKey != "" {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.hostKey))
		if err != nil {
			if closer != nil {
				closer.Close()
			}
			return nil, nil, fmt.Errorf("could not parse connection.hostKey (authorized_keys format expected): %w", err)
		}
		cfg.HostKeyCallback = ssh.FixedHostKey(pk)
		// Ask the server for the key type we pin, so a server with several host keys offers the right one.
		if pk.Type() == ssh.KeyAlgoRSA {
			cfg.HostKeyAlgorithms = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		} else {
			cfg.HostKeyAlgorithms = []string{pk.Type()}
		}
	}
	return cfg, closer, nil
}

// dial connects with the retry semantics of pulumi-command: up to dialErrorLimit attempts (-1: unlimited),
// each bounded by perDialTimeout seconds (0: no bound), logging "Dial N/limit failed: retrying".
func dial(ctx context.Context, c *connection, status func(string)) (*ssh.Client, error) {
	if c.hasProxy {
		return nil, errors.New("connection.proxy is not supported by forge-edge's stand-in for pulumi-command " +
			"(see harness/COMMAND-PROVIDER.md)")
	}
	cfg, closer, err := c.clientConfig()
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(c.perDialTimeout) * time.Second
	if c.perDialTimeout < 0 {
		timeout = 0
	}
	limit := c.dialErrorLimit
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		client, err := dialOnce(ctx, c.addr(), cfg, timeout)
		if err == nil {
			if closer != nil {
				// The agent connection is only needed for the handshake.
				closer.Close()
			}
			return client, nil
		}
		if ctx.Err() != nil || (limit >= 0 && attempt >= limit) {
			if closer != nil {
				closer.Close()
			}
			return nil, fmt.Errorf("failed to dial %s@%s after %d attempt(s): %w", c.user, c.addr(), attempt, err)
		}
		if limit < 0 {
			status(fmt.Sprintf("Dial %d failed: retrying", attempt))
		} else {
			status(fmt.Sprintf("Dial %d/%d failed: retrying", attempt, limit))
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(delay*3/2, 5*time.Second)
	}
}

func dialOnce(ctx context.Context, addr string, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if timeout > 0 {
		_ = nc.SetDeadline(time.Now().Add(timeout))
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// syncBuffer is a bytes.Buffer safe for concurrent writers (stdout and stderr into the combined buffer).
type syncBuffer struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (s syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// lineLogger forwards complete lines of output to the engine log.
type lineLogger struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(string(l.buf))
		l.buf = nil
	}
}

type runSpec struct {
	cmd     string
	stdin   io.Reader // nil: no stdin
	env     map[string]string
	prevEnv map[string]string // PULUMI_COMMAND_STDOUT/STDERR: warn only when refused
	logging string            // stdout | stderr | stdoutAndStderr | none
}

// runRemote runs one command in a fresh session, like pulumi-command's remote run.
func runRemote(ctx context.Context, client *ssh.Client, spec runSpec,
	log func(diag.Severity, string),
) (stdout, stderr string, err error) {
	session, err := client.NewSession()
	if err != nil {
		return "", "", fmt.Errorf("could not open an SSH session: %w", err)
	}
	defer session.Close()

	for _, k := range sortedStrings(spec.env) {
		if err := session.Setenv(k, spec.env[k]); err != nil {
			return "", "", fmt.Errorf("could not set environment variable %q: the SSH server refused it "+
				"(it must allow it with AcceptEnv): %w", k, err)
		}
	}
	for _, k := range sortedStrings(spec.prevEnv) {
		if err := session.Setenv(k, spec.prevEnv[k]); err != nil {
			log(diag.Warning, fmt.Sprintf("Unable to set '%s'. This only works if your SSH server is configured "+
				"to accept these variables via AcceptEnv. Alternatively, if a Bash-like shell runs the command "+
				"on the remote host, you could prefix the command itself with the variables in the form "+
				"'VAR=value command'", k))
		}
	}

	var mu sync.Mutex
	var outBuf, errBuf, combined bytes.Buffer
	comb := syncBuffer{&mu, &combined}
	var outW io.Writer = io.MultiWriter(&outBuf, comb)
	var errW io.Writer = io.MultiWriter(&errBuf, comb)
	var loggers []*lineLogger
	logging := spec.logging
	if logging == "" {
		logging = "stdoutAndStderr"
	}
	if logging == "stdout" || logging == "stdoutAndStderr" {
		l := &lineLogger{emit: func(s string) { log(diag.Info, s) }}
		loggers = append(loggers, l)
		outW = io.MultiWriter(outW, l)
	}
	if logging == "stderr" || logging == "stdoutAndStderr" {
		l := &lineLogger{emit: func(s string) { log(diag.Info, s) }}
		loggers = append(loggers, l)
		errW = io.MultiWriter(errW, l)
	}
	// outBuf and errBuf each have a single writer (the session's copier goroutines); comb is locked.
	session.Stdout = outW
	session.Stderr = errW
	if spec.stdin != nil {
		session.Stdin = spec.stdin
	}

	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = session.Signal(ssh.SIGTERM)
			session.Close()
		case <-done:
		}
	}()
	runErr := session.Run(spec.cmd)
	close(done)
	for _, l := range loggers {
		l.flush()
	}
	stdout = strings.TrimSuffix(outBuf.String(), "\n")
	stderr = strings.TrimSuffix(errBuf.String(), "\n")
	if runErr != nil {
		if ctx.Err() != nil {
			runErr = fmt.Errorf("%w (%v)", ctx.Err(), runErr)
		}
		if logging == "none" {
			// Output may carry secrets (forge-edge reads the kubeconfig this way): keep it out of the error.
			return stdout, stderr, fmt.Errorf("%v: running %q (output withheld: logging is \"none\")", runErr, spec.cmd)
		}
		mu.Lock()
		out := combined.String()
		mu.Unlock()
		return stdout, stderr, fmt.Errorf("%v: running %q:\n%s", runErr, spec.cmd, out)
	}
	return stdout, stderr, nil
}

func sortedStrings(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
