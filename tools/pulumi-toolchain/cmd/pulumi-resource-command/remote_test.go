package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// testSSHServer is a minimal SSH server on 127.0.0.1 that runs `exec` requests with /bin/sh,
// accepts only the password "pw", and only the environment variable ACCEPTED (like sshd's AcceptEnv).
func testSSHServer(t *testing.T) (host string, port int) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(_ ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if string(pw) == "pw" {
				return nil, nil
			}
			return nil, ssh.ErrNoAuth
		},
	}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go serveSSH(nc, cfg)
		}
	}()
	addr := ln.Addr().(*net.TCPAddr)
	return addr.IP.String(), addr.Port
}

func serveSSH(nc net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			var env []string
			for req := range chReqs {
				switch req.Type {
				case "env":
					var kv struct{ K, V string }
					_ = ssh.Unmarshal(req.Payload, &kv)
					ok := kv.K == "ACCEPTED"
					if ok {
						env = append(env, kv.K+"="+kv.V)
					}
					_ = req.Reply(ok, nil)
				case "exec":
					var p struct{ Cmd string }
					_ = ssh.Unmarshal(req.Payload, &p)
					_ = req.Reply(true, nil)
					cmd := exec.Command("/bin/sh", "-c", p.Cmd)
					cmd.Env = append(os.Environ(), env...)
					cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
					code := 0
					if err := cmd.Run(); err != nil {
						code = 1
						if ee, ok := err.(*exec.ExitError); ok {
							code = ee.ExitCode()
						}
					}
					status := make([]byte, 4)
					binary.BigEndian.PutUint32(status, uint32(code))
					_, _ = ch.SendRequest("exit-status", false, status)
					return
				default:
					_ = req.Reply(false, nil)
				}
			}
		}()
	}
}

func conn(host string, port int, password string) resource.PropertyValue {
	return resource.NewObjectProperty(resource.PropertyMap{
		"host":           resource.NewStringProperty(host),
		"port":           resource.NewNumberProperty(float64(port)),
		"user":           resource.NewStringProperty("tester"),
		"password":       resource.MakeSecret(resource.NewStringProperty(password)),
		"dialErrorLimit": resource.NewNumberProperty(1),
	})
}

func TestRemoteCommandAndCopyFile(t *testing.T) {
	host, port := testSSHServer(t)
	dir := t.TempDir()
	p := &commandProvider{}
	ctx := context.Background()

	ins := resource.PropertyMap{
		"connection": conn(host, port, "pw"),
		"create":     resource.NewStringProperty(`echo "$ACCEPTED/$EXPORTED" > ` + filepath.Join(dir, "remote.txt") + `; cat; echo err >&2`),
		"delete":     resource.NewStringProperty(`rm ` + filepath.Join(dir, "remote.txt")),
		"environment": resource.NewObjectProperty(resource.PropertyMap{
			"ACCEPTED": resource.NewStringProperty("a"),
			"EXPORTED": resource.NewStringProperty("it's b"),
		}),
		"stdin": resource.NewStringProperty("from stdin"),
	}
	outs, err := p.apply(ctx, typeRemoteCommand, "urn:pulumi:d::p::command:remote:Command::r", "create", ins, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "remote.txt")); string(b) != "a/it's b\n" {
		t.Fatalf("remote.txt = %q", b)
	}
	if got := unwrap(outs["stdout"]).StringValue(); got != "from stdin" {
		t.Fatalf("stdout = %q", got)
	}
	if got := unwrap(outs["stderr"]).StringValue(); got != "err" {
		t.Fatalf("stderr = %q", got)
	}
	if !outs["connection"].IsSecret() {
		t.Fatal("connection must be stored as a secret")
	}
	if _, err := p.apply(ctx, typeRemoteCommand, "urn:pulumi:d::p::command:remote:Command::r", "delete", outs, outs); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "remote.txt")); !os.IsNotExist(err) {
		t.Fatalf("delete did not run: %v", err)
	}

	src := filepath.Join(dir, "src.sh")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho copied\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst dir", "dst.sh")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	cp := resource.PropertyMap{
		"connection": conn(host, port, "pw"),
		"localPath":  resource.NewStringProperty(src),
		"remotePath": resource.NewStringProperty(dst),
	}
	if _, err := p.apply(ctx, typeRemoteCopyFile, "urn:pulumi:d::p::command:remote:CopyFile::c", "create", cp, nil); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dst)
	if err != nil || st.Mode().Perm() != 0o750 {
		t.Fatalf("copied file: %v %v", st, err)
	}

	bad := ins.Copy()
	bad["connection"] = conn(host, port, "wrong")
	_, err = p.apply(ctx, typeRemoteCommand, "urn:pulumi:d::p::command:remote:Command::r", "create", bad, nil)
	if err == nil || !strings.Contains(err.Error(), "tester@"+net.JoinHostPort(host, strconv.Itoa(port))) {
		t.Fatalf("wrong password: %v", err)
	}
}
