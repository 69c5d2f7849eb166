package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestShellSplit(t *testing.T) {
	got, err := shellSplit(`--import=tsx  --max-old-space-size=512 "--title=a b" 'x\y' c\ d`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--import=tsx", "--max-old-space-size=512", "--title=a b", `x\y`, "c d"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
	if _, err := shellSplit(`"open`); err == nil {
		t.Fatal("unterminated quote accepted")
	}
}

func TestResourcePackages(t *testing.T) {
	root := t.TempDir()
	write := func(rel, body string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("node_modules/@pulumi/command/package.json", `{"name":"@pulumi/command","version":"v4.5.0","pulumi":{"resource":true,"name":"command"}}`)
	write("node_modules/@pulumi/pulumi/package.json", `{"name":"@pulumi/pulumi","version":"3.259.0"}`)
	write("node_modules/@acme/thing/package.json", `{"name":"@acme/thing","version":"1.0.0","pulumi":{"resource":true}}`)
	write("node_modules/zod/package.json", `{"name":"zod","version":"4.0.0"}`)
	prog := filepath.Join(root, "stacks")
	if err := os.MkdirAll(prog, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := resourcePackages(prog)
	if err != nil {
		t.Fatal(err)
	}
	want := []packageInfo{{Name: "acme/thing", Version: "v1.0.0"}, {Name: "command", Version: "v4.5.0"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v want %+v", got, want)
	}
	if p, ok := findUp(prog, runScript); ok {
		t.Fatalf("found a run script that does not exist: %s", p)
	}
}
