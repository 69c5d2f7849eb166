package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

type connection struct {
	host, user, password, privateKey, privateKeyPassword, agentSocketPath string
	port                                                                  int
	dialErrorLimit                                                        int
	proxy                                                                 *connection
}

type remoteSpec struct {
	conn    connection
	command string
	env     map[string]string
	stdin   string
}

func connectionFrom(m resource.PropertyMap) (connection, error) {
	v, ok := m["connection"]
	if !ok || !unwrap(v).IsObject() {
		return connection{}, errors.New("connection is required")
	}
	return parseConnection(unwrapDeep(v).ObjectValue())
}

func parseConnection(c resource.PropertyMap) (connection, error) {
	num := func(k string, def int) int {
		if v, ok := c[resource.PropertyKey(k)]; ok {
			switch {
			case v.IsNumber():
				return int(v.NumberValue())
			case v.IsString():
				if n, err := strconv.Atoi(v.StringValue()); err == nil {
					return n
				}
			}
		}
		return def
	}
	conn := connection{
		host:               str(c, "host"),
		user:               str(c, "user"),
		password:           str(c, "password"),
		privateKey:         str(c, "privateKey"),
		privateKeyPassword: str(c, "privateKeyPassword"),
		agentSocketPath:    str(c, "agentSocketPath"),
		port:               num("port", 22),
		dialErrorLimit:     num("dialErrorLimit", 10),
	}
	if conn.host == "" {
		return conn, errors.New("connection.host is required")
	}
	if conn.user == "" {
		conn.user = "root"
	}
	if p, ok := c["proxy"]; ok && p.IsObject() {
		proxy, err := parseConnection(p.ObjectValue())
		if err != nil {
			return conn, fmt.Errorf("connection.proxy: %w", err)
		}
		conn.proxy = &proxy
	}
	return conn, nil
}

func remoteSpecFrom(m resource.PropertyMap, key string, extraEnv map[string]string) (remoteSpec, error) {
	conn, err := connectionFrom(m)
	if err != nil {
		return remoteSpec{}, err
	}
	env := strMap(m, "environment")
	for k, v := range extraEnv {
		env[k] = v
	}
	return remoteSpec{conn: conn, command: str(m, key), env: env, stdin: str(m, "stdin")}, nil
}

func (c connection) clientConfig() (*ssh.ClientConfig, error) {
	var auths []ssh.AuthMethod
	if c.privateKey != "" {
		var signer ssh.Signer
		var err error
		if c.privateKeyPassword != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(c.privateKey), []byte(c.privateKeyPassword))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(c.privateKey))
		}
		if err != nil {
			return nil, fmt.Errorf("connection.privateKey: %w", err)
		}
		auths = append(auths, ssh.PublicKeys(signer))
	}
	if c.password != "" {
		auths = append(auths, ssh.Password(c.password))
		auths = append(auths, ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			answers := make([]string, len(qs))
			for i := range answers {
				answers[i] = c.password
			}
			return answers, nil
		}))
	}
	sock := c.agentSocketPath
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			auths = append(auths, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
		}
	}
	return &ssh.ClientConfig{
		User: c.user,
		Auth: auths,
		// Like the upstream provider: hosts are not pinned (homelab machines are recreated often).
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         15 * time.Second,
	}, nil
}

func (c connection) addr() string { return net.JoinHostPort(c.host, strconv.Itoa(c.port)) }

// dial connects (through the jump host if any), retrying while the host is not reachable yet —
// a VM that was just started takes a while to answer SSH.
func (c connection) dial(ctx context.Context) (*ssh.Client, error) {
	cfg, err := c.clientConfig()
	if err != nil {
		return nil, err
	}
	var lastErr error
	limit := c.dialErrorLimit
	if limit <= 0 {
		limit = 1
	}
	for attempt := 1; attempt <= limit; attempt++ {
		var client *ssh.Client
		if c.proxy != nil {
			var jump *ssh.Client
			jump, lastErr = c.proxy.dial(ctx)
			if lastErr == nil {
				var nc net.Conn
				nc, lastErr = jump.Dial("tcp", c.addr())
				if lastErr == nil {
					var cc ssh.Conn
					var chans <-chan ssh.NewChannel
					var reqs <-chan *ssh.Request
					cc, chans, reqs, lastErr = ssh.NewClientConn(nc, c.addr(), cfg)
					if lastErr == nil {
						client = ssh.NewClient(cc, chans, reqs)
					}
				}
			}
		} else {
			client, lastErr = ssh.Dial("tcp", c.addr(), cfg)
		}
		if lastErr == nil {
			return client, nil
		}
		if attempt < limit {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
	}
	return nil, fmt.Errorf("ssh %s@%s: %w", c.user, c.addr(), lastErr)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func runRemote(ctx context.Context, spec remoteSpec) (runResult, error) {
	client, err := spec.conn.dial(ctx)
	if err != nil {
		return runResult{}, err
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return runResult{}, err
	}
	defer session.Close()

	command := spec.command
	var exports []string
	for _, kv := range sortedEnv(spec.env) {
		k, v, _ := strings.Cut(kv, "=")
		// sshd accepts only the variables its AcceptEnv lists; export the others in the command.
		if err := session.Setenv(k, v); err != nil {
			exports = append(exports, "export "+k+"="+shellQuote(v)+";")
		}
	}
	if len(exports) > 0 {
		command = strings.Join(exports, " ") + " " + command
	}
	var stdout, stderr bytes.Buffer
	session.Stdout, session.Stderr = &stdout, &stderr
	if spec.stdin != "" {
		session.Stdin = strings.NewReader(spec.stdin)
	}
	done := make(chan error, 1)
	go func() { done <- session.Run(command) }()
	select {
	case <-ctx.Done():
		_ = session.Signal(ssh.SIGKILL)
		return runResult{}, ctx.Err()
	case err = <-done:
	}
	res := runResult{
		stdout: strings.TrimSuffix(stdout.String(), "\n"),
		stderr: strings.TrimSuffix(stderr.String(), "\n"),
	}
	if err != nil {
		return res, fmt.Errorf("%w: running %q on %s:\n%s\n%s", err, spec.command, spec.conn.host, res.stdout, res.stderr)
	}
	return res, nil
}

// copyFile streams a local file to remotePath with `cat` over an SSH session, keeping its mode bits.
func copyFile(ctx context.Context, conn connection, localPath, remotePath string) error {
	f, err := os.Open(localPath)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("localPath %s is a directory; CopyFile copies one file", localPath)
	}
	client, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return err
	}
	defer session.Close()
	session.Stdin = f
	var stderr bytes.Buffer
	session.Stderr = &stderr
	q := shellQuote(remotePath)
	cmd := fmt.Sprintf("cat > %s && chmod %o %s", q, st.Mode().Perm(), q)
	if err := session.Run(cmd); err != nil {
		return fmt.Errorf("copying %s to %s:%s: %w: %s", localPath, conn.host, remotePath, err, stderr.String())
	}
	return nil
}
