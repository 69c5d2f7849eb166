package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

const testURN = "urn:pulumi:dev::proj::command:local:Command::c"

func diff(t *testing.T, olds, news resource.PropertyMap) *pulumirpc.DiffResponse {
	t.Helper()
	o, err := marshal(olds)
	if err != nil {
		t.Fatal(err)
	}
	n, err := marshal(news)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&commandProvider{}).Diff(context.Background(), &pulumirpc.DiffRequest{Urn: testURN, OldInputs: o, News: n})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDiff(t *testing.T) {
	base := resource.PropertyMap{
		"create":      resource.NewStringProperty("echo hi"),
		"environment": resource.NewObjectProperty(resource.PropertyMap{"A": resource.MakeSecret(resource.NewStringProperty("s"))}),
		"triggers":    resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("1")}),
	}
	if r := diff(t, base, base.Copy()); r.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("same inputs: %v", r)
	}
	changed := base.Copy()
	changed["create"] = resource.NewStringProperty("echo bye")
	if r := diff(t, base, changed); r.Changes != pulumirpc.DiffResponse_DIFF_SOME || len(r.Replaces) != 0 || !reflect.DeepEqual(r.Diffs, []string{"create"}) {
		t.Fatalf("create changed: want an update, got %v", r)
	}
	retrigger := base.Copy()
	retrigger["triggers"] = resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("2")})
	if r := diff(t, base, retrigger); !reflect.DeepEqual(r.Replaces, []string{"triggers"}) {
		t.Fatalf("triggers changed: want a replacement, got %v", r)
	}
	unknown := base.Copy()
	unknown["triggers"] = resource.MakeComputed(resource.NewStringProperty(""))
	if r := diff(t, base, unknown); !reflect.DeepEqual(r.Replaces, []string{"triggers"}) {
		t.Fatalf("unknown triggers: want a replacement, got %v", r)
	}
}

func TestLocalLifecycle(t *testing.T) {
	dir := t.TempDir()
	p := &commandProvider{}
	ctx := context.Background()
	ins := resource.PropertyMap{
		"create":      resource.NewStringProperty(`printf '%s' "$TOKEN" > out.txt; echo created; echo warn >&2`),
		"update":      resource.NewStringProperty(`echo "was: $PULUMI_COMMAND_STDOUT"`),
		"delete":      resource.NewStringProperty(`rm out.txt`),
		"dir":         resource.NewStringProperty(dir),
		"environment": resource.NewObjectProperty(resource.PropertyMap{"TOKEN": resource.MakeSecret(resource.NewStringProperty("t0k3n"))}),
		"assetPaths":  resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("**.txt")}),
	}
	outs, err := p.apply(ctx, typeLocalCommand, testURN, "create", ins, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out.txt")); string(b) != "t0k3n" {
		t.Fatalf("out.txt = %q", b)
	}
	if !outs["stdout"].IsSecret() || unwrap(outs["stdout"]).StringValue() != "created" || unwrap(outs["stderr"]).StringValue() != "warn" {
		t.Fatalf("outputs: %v", outs)
	}
	if a := outs["assets"].ObjectValue(); len(a) != 1 || !a["out.txt"].IsAsset() {
		t.Fatalf("assets: %v", outs["assets"])
	}
	upd, err := p.apply(ctx, typeLocalCommand, testURN, "update", ins, outs)
	if err != nil {
		t.Fatal(err)
	}
	if got := unwrap(upd["stdout"]).StringValue(); got != "was: created" {
		t.Fatalf("update stdout = %q", got)
	}
	if _, err := p.apply(ctx, typeLocalCommand, testURN, "delete", upd, upd); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.txt")); !os.IsNotExist(err) {
		t.Fatalf("delete did not run: %v", err)
	}
	bad := resource.PropertyMap{"create": resource.NewStringProperty("echo oops >&2; exit 3")}
	if _, err := p.apply(ctx, typeLocalCommand, testURN, "create", bad, nil); err == nil || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("failing command: %v", err)
	}
}

func TestGlob(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"assets/logos/logo.svg", "src/index.js", "src/secret.js", "top.js"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := globFiles(dir, []string{"assets/**", "src/**.js", "!**secret.*"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"assets/logos/logo.svg", "src/index.js"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	got, _ = globFiles(dir, []string{"*.js"})
	if want := []string{"top.js"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("* must not cross /: got %v", got)
	}
}
