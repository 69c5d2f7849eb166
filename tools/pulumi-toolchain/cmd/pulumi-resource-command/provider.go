package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

const (
	typeLocalCommand   = "command:local:Command"
	typeRemoteCommand  = "command:remote:Command"
	typeRemoteCopyFile = "command:remote:CopyFile"
	fnLocalRun         = "command:local:run"
)

// replaceKeys are the inputs whose change replaces the resource instead of updating it.
var replaceKeys = map[string][]string{
	typeLocalCommand:   {"triggers"},
	typeRemoteCommand:  {"triggers"},
	typeRemoteCopyFile: {"triggers", "connection", "localPath", "remotePath"},
}

// inputKeys are the inputs each resource takes (everything else in a state is an output).
var inputKeys = map[string][]string{
	typeLocalCommand: {"create", "update", "delete", "dir", "environment", "interpreter", "stdin",
		"triggers", "assetPaths", "archivePaths", "logging", "addPreviousOutputInEnv"},
	typeRemoteCommand: {"connection", "create", "update", "delete", "environment", "stdin", "triggers",
		"logging", "addPreviousOutputInEnv"},
	typeRemoteCopyFile: {"connection", "localPath", "remotePath", "triggers"},
}

type commandProvider struct {
	pulumirpc.UnimplementedResourceProviderServer
	host *provider.HostClient
}

func newCommandProvider(host *provider.HostClient) *commandProvider {
	return &commandProvider{host: host}
}

var marshalOpts = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, KeepResources: true, SkipNulls: true}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	if s == nil {
		return resource.PropertyMap{}, nil
	}
	return plugin.UnmarshalProperties(s, marshalOpts)
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, marshalOpts)
}

func (p *commandProvider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (p *commandProvider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	schema, err := json.Marshal(map[string]any{
		"name":        "command",
		"version":     version,
		"description": "Run commands locally or over SSH (homelab-data offline provider).",
		"resources":   map[string]any{},
		"functions":   map[string]any{},
	})
	if err != nil {
		return nil, err
	}
	return &pulumirpc.GetSchemaResponse{Schema: string(schema)}, nil
}

func (p *commandProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *commandProvider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *commandProvider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, AcceptResources: true}, nil
}

func (p *commandProvider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func resourceType(urn string) string { return string(resource.URN(urn).Type()) }

func unsupported(t string) error {
	return status.Errorf(codes.Unimplemented,
		"the homelab-data offline command provider does not implement %q (it implements %s, %s, %s and %s)",
		t, typeLocalCommand, typeRemoteCommand, typeRemoteCopyFile, fnLocalRun)
}

// Check validates the types of the known inputs; it does not rewrite them.
func (p *commandProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	t := resourceType(req.GetUrn())
	if _, ok := inputKeys[t]; !ok {
		return nil, unsupported(t)
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	var failures []*pulumirpc.CheckFailure
	fail := func(k, reason string) {
		failures = append(failures, &pulumirpc.CheckFailure{Property: k, Reason: reason})
	}
	for _, k := range []string{"create", "update", "delete", "dir", "stdin", "localPath", "remotePath"} {
		if v, ok := news[resource.PropertyKey(k)]; ok && !isUnknown(v) && !unwrap(v).IsString() && !unwrap(v).IsNull() {
			fail(k, fmt.Sprintf("%s must be a string", k))
		}
	}
	if v, ok := news["environment"]; ok && !isUnknown(v) && !unwrap(v).IsObject() && !unwrap(v).IsNull() {
		fail("environment", "environment must be a map of strings")
	}
	if v, ok := news["interpreter"]; ok && !isUnknown(v) && !unwrap(v).IsArray() && !unwrap(v).IsNull() {
		fail("interpreter", "interpreter must be a list of strings")
	}
	if t != typeLocalCommand {
		if _, ok := news["connection"]; !ok {
			fail("connection", "connection is required")
		}
	}
	if t == typeRemoteCopyFile {
		for _, k := range []string{"localPath", "remotePath"} {
			if _, ok := news[resource.PropertyKey(k)]; !ok {
				fail(k, k+" is required")
			}
		}
	}
	return &pulumirpc.CheckResponse{Inputs: req.GetNews(), Failures: failures}, nil
}

// Diff compares the inputs: `triggers` (and, for CopyFile, its paths and connection) replace,
// any other changed input updates.
func (p *commandProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	t := resourceType(req.GetUrn())
	keys, ok := inputKeys[t]
	if !ok {
		return nil, unsupported(t)
	}
	olds := req.GetOldInputs()
	if olds == nil {
		olds = req.GetOlds()
	}
	oldMap, err := unmarshal(olds)
	if err != nil {
		return nil, err
	}
	newMap, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	ignored := map[string]bool{}
	for _, k := range req.GetIgnoreChanges() {
		ignored[k] = true
	}
	replacing := map[string]bool{}
	for _, k := range replaceKeys[t] {
		replacing[k] = true
	}
	var diffs, replaces []string
	detailed := map[string]*pulumirpc.PropertyDiff{}
	for _, k := range keys {
		if ignored[k] {
			continue
		}
		o, hasOld := oldMap[resource.PropertyKey(k)]
		n, hasNew := newMap[resource.PropertyKey(k)]
		if !hasOld && !hasNew {
			continue
		}
		if hasOld && hasNew && !isUnknown(n) && unwrapDeep(o).DeepEquals(unwrapDeep(n)) {
			continue
		}
		kind := pulumirpc.PropertyDiff_UPDATE
		switch {
		case !hasOld:
			kind = pulumirpc.PropertyDiff_ADD
		case !hasNew:
			kind = pulumirpc.PropertyDiff_DELETE
		}
		if replacing[k] {
			kind += pulumirpc.PropertyDiff_ADD_REPLACE - pulumirpc.PropertyDiff_ADD
			replaces = append(replaces, k)
		}
		diffs = append(diffs, k)
		detailed[k] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	changes := pulumirpc.DiffResponse_DIFF_NONE
	if len(diffs) > 0 {
		changes = pulumirpc.DiffResponse_DIFF_SOME
	}
	return &pulumirpc.DiffResponse{
		Changes: changes, Diffs: diffs, Replaces: replaces,
		DetailedDiff: detailed, HasDetailedDiff: true,
	}, nil
}

func randomID(name string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return name + hex.EncodeToString(b)
}

func (p *commandProvider) logf(ctx context.Context, urn string, format string, args ...any) {
	if p.host != nil {
		_ = p.host.Log(ctx, diag.Debug, resource.URN(urn), fmt.Sprintf(format, args...))
	}
}

func (p *commandProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	t := resourceType(req.GetUrn())
	ins, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	id := randomID(resource.URN(req.GetUrn()).Name())
	if req.GetPreview() {
		outs := previewOutputs(t, ins)
		s, err := marshal(outs)
		return &pulumirpc.CreateResponse{Id: "", Properties: s}, err
	}
	outs, err := p.apply(ctx, t, req.GetUrn(), "create", ins, nil)
	if err != nil {
		return nil, err
	}
	s, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: s}, nil
}

func (p *commandProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	t := resourceType(req.GetUrn())
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	olds, err := unmarshal(req.GetOlds())
	if err != nil {
		return nil, err
	}
	if req.GetPreview() {
		s, err := marshal(previewOutputs(t, news))
		return &pulumirpc.UpdateResponse{Properties: s}, err
	}
	outs, err := p.apply(ctx, t, req.GetUrn(), "update", news, olds)
	if err != nil {
		return nil, err
	}
	s, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: s}, nil
}

func (p *commandProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	t := resourceType(req.GetUrn())
	state, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	if _, err := p.apply(ctx, t, req.GetUrn(), "delete", state, state); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Read (refresh) reports the recorded state: a command's effects cannot be read back.
func (p *commandProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

func (p *commandProvider) Invoke(ctx context.Context, req *pulumirpc.InvokeRequest) (*pulumirpc.InvokeResponse, error) {
	if req.GetTok() != fnLocalRun {
		return nil, unsupported(req.GetTok())
	}
	args, err := unmarshal(req.GetArgs())
	if err != nil {
		return nil, err
	}
	// local.run takes `command` where local.Command takes `create`.
	spec, err := localSpecFrom(args, "command", nil)
	if err != nil {
		return &pulumirpc.InvokeResponse{Failures: []*pulumirpc.CheckFailure{{Property: "command", Reason: err.Error()}}}, nil
	}
	res, err := runLocal(ctx, spec)
	if err != nil {
		return nil, err
	}
	outs := args.Copy()
	secret := args.ContainsSecrets()
	outs["stdout"] = maybeSecret(resource.NewStringProperty(res.stdout), secret)
	outs["stderr"] = maybeSecret(resource.NewStringProperty(res.stderr), secret)
	if err := addAssets(outs, args, spec.dir); err != nil {
		return nil, err
	}
	s, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.InvokeResponse{Return: s}, nil
}

// previewOutputs are the inputs plus unknown command outputs.
func previewOutputs(t string, ins resource.PropertyMap) resource.PropertyMap {
	outs := ins.Copy()
	if t != typeRemoteCopyFile {
		outs["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
		outs["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
	}
	return outs
}

// apply runs the create/update/delete step of a resource and returns its new state.
// For update and delete, olds is the previous state (its stdout/stderr are handed to the command).
func (p *commandProvider) apply(ctx context.Context, t, urn, step string, ins, olds resource.PropertyMap) (resource.PropertyMap, error) {
	if _, ok := inputKeys[t]; !ok {
		return nil, unsupported(t)
	}
	prev := map[string]string{}
	if olds != nil {
		for _, k := range []string{"stdout", "stderr"} {
			if v, ok := olds[resource.PropertyKey(k)]; ok && unwrap(v).IsString() {
				prev["PULUMI_COMMAND_"+strings.ToUpper(k)] = unwrap(v).StringValue()
			}
		}
	}
	key := step
	if step == "update" {
		if v, ok := ins["update"]; !ok || unwrap(v).IsNull() {
			key = "create" // no update command: create runs again
		}
	}
	secret := ins.ContainsSecrets()
	outs := ins.Copy()
	if t == typeRemoteCommand || t == typeRemoteCopyFile {
		if c, ok := outs["connection"]; ok && !c.IsSecret() {
			outs["connection"] = resource.MakeSecret(c) // holds passwords/keys
		}
	}

	switch t {
	case typeLocalCommand:
		spec, err := localSpecFrom(ins, key, prev)
		if err != nil {
			return nil, err
		}
		if spec.command == "" {
			if step == "delete" {
				return outs, nil
			}
			outs["stdout"], outs["stderr"] = keepPrevious(olds)
			return outs, nil
		}
		p.logf(ctx, urn, "running %s command locally", key)
		res, err := runLocal(ctx, spec)
		if err != nil {
			return nil, err
		}
		outs["stdout"] = maybeSecret(resource.NewStringProperty(res.stdout), secret)
		outs["stderr"] = maybeSecret(resource.NewStringProperty(res.stderr), secret)
		if step != "delete" {
			if err := addAssets(outs, ins, spec.dir); err != nil {
				return nil, err
			}
		}
		return outs, nil
	case typeRemoteCommand:
		spec, err := remoteSpecFrom(ins, key, prev)
		if err != nil {
			return nil, err
		}
		if spec.command == "" {
			if step == "delete" {
				return outs, nil
			}
			outs["stdout"], outs["stderr"] = keepPrevious(olds)
			return outs, nil
		}
		p.logf(ctx, urn, "running %s command on %s", key, spec.conn.host)
		res, err := runRemote(ctx, spec)
		if err != nil {
			return nil, err
		}
		outs["stdout"] = maybeSecret(resource.NewStringProperty(res.stdout), secret)
		outs["stderr"] = maybeSecret(resource.NewStringProperty(res.stderr), secret)
		return outs, nil
	case typeRemoteCopyFile:
		if step == "delete" {
			return outs, nil // like upstream: the copied file is left in place
		}
		conn, err := connectionFrom(ins)
		if err != nil {
			return nil, err
		}
		local, remote := str(ins, "localPath"), str(ins, "remotePath")
		p.logf(ctx, urn, "copying %s to %s:%s", local, conn.host, remote)
		if err := copyFile(ctx, conn, local, remote); err != nil {
			return nil, err
		}
		return outs, nil
	}
	return nil, unsupported(t)
}

func keepPrevious(olds resource.PropertyMap) (resource.PropertyValue, resource.PropertyValue) {
	stdout, stderr := resource.NewStringProperty(""), resource.NewStringProperty("")
	if olds != nil {
		if v, ok := olds["stdout"]; ok {
			stdout = v
		}
		if v, ok := olds["stderr"]; ok {
			stderr = v
		}
	}
	return stdout, stderr
}

func maybeSecret(v resource.PropertyValue, secret bool) resource.PropertyValue {
	if secret {
		return resource.MakeSecret(v)
	}
	return v
}

func isUnknown(v resource.PropertyValue) bool {
	return v.ContainsUnknowns()
}

// unwrap strips secret and output wrappers from one value.
func unwrap(v resource.PropertyValue) resource.PropertyValue {
	for {
		switch {
		case v.IsSecret():
			v = v.SecretValue().Element
		case v.IsOutput():
			v = v.OutputValue().Element
		default:
			return v
		}
	}
}

// unwrapDeep strips secret and output wrappers everywhere in a value.
func unwrapDeep(v resource.PropertyValue) resource.PropertyValue {
	v = unwrap(v)
	switch {
	case v.IsArray():
		arr := make([]resource.PropertyValue, 0, len(v.ArrayValue()))
		for _, e := range v.ArrayValue() {
			arr = append(arr, unwrapDeep(e))
		}
		return resource.NewArrayProperty(arr)
	case v.IsObject():
		m := resource.PropertyMap{}
		for k, e := range v.ObjectValue() {
			m[k] = unwrapDeep(e)
		}
		return resource.NewObjectProperty(m)
	}
	return v
}

func str(m resource.PropertyMap, key string) string {
	if v, ok := m[resource.PropertyKey(key)]; ok {
		if u := unwrap(v); u.IsString() {
			return u.StringValue()
		}
	}
	return ""
}

func strList(m resource.PropertyMap, key string) []string {
	var out []string
	if v, ok := m[resource.PropertyKey(key)]; ok {
		if u := unwrap(v); u.IsArray() {
			for _, e := range u.ArrayValue() {
				if e := unwrap(e); e.IsString() {
					out = append(out, e.StringValue())
				}
			}
		}
	}
	return out
}

func strMap(m resource.PropertyMap, key string) map[string]string {
	out := map[string]string{}
	if v, ok := m[resource.PropertyKey(key)]; ok {
		if u := unwrap(v); u.IsObject() {
			for k, e := range u.ObjectValue() {
				e = unwrap(e)
				switch {
				case e.IsString():
					out[string(k)] = e.StringValue()
				case e.IsNumber():
					out[string(k)] = fmt.Sprint(e.NumberValue())
				case e.IsBool():
					out[string(k)] = fmt.Sprint(e.BoolValue())
				}
			}
		}
	}
	return out
}

// sortedEnv renders a map as KEY=VALUE pairs in a stable order.
func sortedEnv(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+m[k])
	}
	return out
}
