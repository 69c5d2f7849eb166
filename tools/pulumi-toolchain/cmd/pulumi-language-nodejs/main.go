// Command pulumi-language-nodejs is the Node.js language host that homelab-data's offline
// toolchain builds (see adrs/0004-offline-pulumi-toolchain.md).
//
// The upstream language host lives in its own Go module that the Go module proxy reachable from
// the build machines does not serve, so this is a small, self-contained implementation of the
// same gRPC contract (pulumirpc.LanguageRuntime) on top of the pulumi SDK module, which is
// served. It does what `pulumi preview/up/refresh/destroy` need from a language host:
//
//   - Run: start `node [nodeargs] <node_modules>/@pulumi/pulumi/cmd/run <flags> <entry point>`
//     with the stack's config in PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS, the way the
//     @pulumi/pulumi run script expects it;
//   - GetRequiredPlugins / GetRequiredPackages: report the resource plugins declared by the
//     packages in node_modules ("pulumi": {"resource": true} in their package.json);
//   - GetPluginInfo / About / GetProgramDependencies / InstallDependencies.
//
// Everything else (code generation, `pulumi new` templates, policy packs, packing) answers
// Unimplemented, which the engine reports as such.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// version is set at build time: -ldflags "-X main.version=v3.x.y" (the pulumi version it ships with).
var version = "v0.0.0-dev"

// exitCodeUserActionable is what @pulumi/pulumi/cmd/run exits with after it has already logged a
// user-actionable error through the engine; the engine should then stop without adding noise.
const exitCodeUserActionable = 32

const runScript = "node_modules/@pulumi/pulumi/cmd/run"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "-version") {
		fmt.Println(version)
		return
	}

	// The engine starts language hosts as `<binary> [flags] <engine address>`. Accept (and mostly
	// ignore) the flags upstream hosts have accepted over time so that no engine version trips us.
	fs := flag.NewFlagSet("pulumi-language-nodejs", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	tracing := fs.String("tracing", "", "Zipkin-compatible tracing endpoint")
	fs.String("root", "", "ignored")
	fs.String("binary", "", "ignored")
	fs.String("tsconfig", "", "ignored")
	fs.String("nodeargs", "", "ignored")
	fs.Bool("typescript", true, "ignored")
	fs.Bool("logtostderr", false, "ignored")
	fs.Bool("logflow", false, "ignored")
	fs.Int("v", 0, "ignored")
	var engineAddress string
	if err := fs.Parse(os.Args[1:]); err == nil {
		if fs.NArg() > 0 {
			engineAddress = fs.Arg(fs.NArg() - 1)
		}
	} else if len(os.Args) > 1 {
		engineAddress = os.Args[len(os.Args)-1]
	}

	host := &languageHost{engineAddress: engineAddress, tracing: *tracing}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
		Options: rpcutil.OpenTracingServerInterceptorOptions(nil),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: could not start the language host RPC server: %v\n", err)
		os.Exit(1)
	}
	// The engine reads the port from our first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: language host RPC stopped serving: %v\n", err)
		os.Exit(1)
	}
}

type languageHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
	tracing       string
}

var _ pulumirpc.LanguageRuntimeServer = (*languageHost)(nil)

func (h *languageHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: strings.TrimPrefix(version, "v")}, nil
}

// programDirs returns the program directory and the entry point ("." means: let the run script
// pick package.json's main/exports).
func programDirs(info *pulumirpc.ProgramInfo, pwd, program string) (string, string) {
	dir := info.GetProgramDirectory()
	if dir == "" {
		dir = pwd
	}
	if dir == "" {
		dir, _ = os.Getwd()
	}
	entry := info.GetEntryPoint()
	if entry == "" {
		entry = program
	}
	if entry == "" {
		entry = "."
	}
	return dir, entry
}

// findUp returns the first <dir or an ancestor>/<rel> that exists.
func findUp(dir, rel string) (string, bool) {
	for d := dir; ; d = filepath.Dir(d) {
		p := filepath.Join(d, rel)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
		if parent := filepath.Dir(d); parent == d {
			return "", false
		}
	}
}

func (h *languageHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	programDir, entry := programDirs(req.GetInfo(), req.GetPwd(), req.GetProgram())
	opts := map[string]any{}
	if o := req.GetInfo().GetOptions(); o != nil {
		opts = o.AsMap()
	}

	runPath := os.Getenv("PULUMI_LANGUAGE_NODEJS_RUN_PATH")
	if runPath == "" {
		p, ok := findUp(programDir, runScript)
		if !ok {
			return &pulumirpc.RunResponse{Error: fmt.Sprintf(
				"could not find %s in %s or any parent directory: the Pulumi Node.js SDK is not installed "+
					"(run `npm ci` in the project)", runScript, programDir)}, nil
		}
		runPath = p
	}

	nodeBin, err := exec.LookPath("node")
	if err != nil {
		return &pulumirpc.RunResponse{Error: "could not find `node` on $PATH: " + err.Error()}, nil
	}

	var args []string
	if s, ok := opts["nodeargs"].(string); ok && strings.TrimSpace(s) != "" {
		split, err := shellSplit(s)
		if err != nil {
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("runtime option nodeargs %q: %v", s, err)}, nil
		}
		args = append(args, split...)
	}
	args = append(args, runPath)
	add := func(flagName, v string) {
		if v != "" {
			args = append(args, "--"+flagName+"="+v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engineAddress)
	add("organization", req.GetOrganization())
	add("project", req.GetProject())
	add("stack", req.GetStack())
	add("root-directory", req.GetInfo().GetRootDirectory())
	add("pwd", programDir)
	if req.GetDryRun() {
		args = append(args, "--dry-run")
	}
	if req.GetParallel() > 0 {
		add("parallel", fmt.Sprint(req.GetParallel()))
	}
	add("tracing", h.tracing)
	args = append(args, entry)
	args = append(args, req.GetArgs()...)

	config, err := json.Marshal(nonNilMap(req.GetConfig()))
	if err != nil {
		return nil, fmt.Errorf("serializing config: %w", err)
	}
	secretKeys, err := json.Marshal(nonNilSlice(req.GetConfigSecretKeys()))
	if err != nil {
		return nil, fmt.Errorf("serializing config secret keys: %w", err)
	}

	env := os.Environ()
	env = append(env, "PULUMI_CONFIG="+string(config), "PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys))
	typescript := true
	if v, ok := opts["typescript"].(bool); ok {
		typescript = v
	}
	env = append(env, fmt.Sprintf("PULUMI_NODEJS_TYPESCRIPT=%t", typescript))
	if v, ok := opts["tsconfig"].(string); ok && v != "" {
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+v)
	}

	cmd := exec.CommandContext(ctx, nodeBin, args...)
	cmd.Dir = programDir
	cmd.Env = env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if exitErr.ExitCode() == exitCodeUserActionable {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode())}, nil
		}
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Problem executing program (could not run language executor): %v", err)}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

func (h *languageHost) GetRequiredPlugins(_ context.Context, req *pulumirpc.GetRequiredPluginsRequest) (*pulumirpc.GetRequiredPluginsResponse, error) {
	dir, _ := programDirs(req.GetInfo(), req.GetPwd(), req.GetProgram())
	deps, err := resourcePackages(dir)
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPluginsResponse{}
	for _, d := range deps {
		resp.Plugins = append(resp.Plugins, &pulumirpc.PluginDependency{
			Name: d.Name, Kind: "resource", Version: d.Version, Server: d.Server,
		})
	}
	return resp, nil
}

func (h *languageHost) GetRequiredPackages(_ context.Context, req *pulumirpc.GetRequiredPackagesRequest) (*pulumirpc.GetRequiredPackagesResponse, error) {
	dir, _ := programDirs(req.GetInfo(), "", "")
	deps, err := resourcePackages(dir)
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPackagesResponse{}
	for _, d := range deps {
		resp.Packages = append(resp.Packages, &pulumirpc.PackageDependency{
			Name: d.Name, Kind: "resource", Version: d.Version, Server: d.Server,
		})
	}
	return resp, nil
}

func (h *languageHost) GetProgramDependencies(_ context.Context, req *pulumirpc.GetProgramDependenciesRequest) (*pulumirpc.GetProgramDependenciesResponse, error) {
	dir, _ := programDirs(req.GetInfo(), req.GetPwd(), req.GetProgram())
	nm, ok := findUp(dir, "node_modules")
	resp := &pulumirpc.GetProgramDependenciesResponse{}
	if !ok {
		return resp, nil
	}
	pkgs, err := listPackages(nm)
	if err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		if req.GetTransitiveDependencies() || strings.HasPrefix(p.Name, "@pulumi/") {
			resp.Dependencies = append(resp.Dependencies, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
		}
	}
	return resp, nil
}

func (h *languageHost) About(context.Context, *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	resp := &pulumirpc.AboutResponse{Metadata: map[string]string{"host": "homelab-data offline language host"}}
	if node, err := exec.LookPath("node"); err == nil {
		resp.Executable = node
		if out, err := exec.Command(node, "--version").Output(); err == nil {
			resp.Version = strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
		}
	}
	return resp, nil
}

// InstallDependencies does not install anything: this toolchain is for machines without general
// internet access, where the repository's node_modules come from `npm ci` at the repository root.
func (h *languageHost) InstallDependencies(req *pulumirpc.InstallDependenciesRequest, srv pulumirpc.LanguageRuntime_InstallDependenciesServer) error {
	dir := req.GetInfo().GetProgramDirectory()
	if dir == "" {
		dir = req.GetDirectory()
	}
	msg := "node_modules found; nothing to install\n"
	if _, ok := findUp(dir, runScript); !ok {
		msg = "no node_modules with @pulumi/pulumi above " + dir + ": run `npm ci` at the repository root\n"
	}
	return srv.Send(&pulumirpc.InstallDependenciesResponse{Stdout: []byte(msg)})
}

func (h *languageHost) RuntimeOptionsPrompts(context.Context, *pulumirpc.RuntimeOptionsRequest) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

type packageInfo struct {
	Name, Version, Server string
}

type packageJSON struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Pulumi  struct {
		Resource bool   `json:"resource"`
		Name     string `json:"name"`
		Version  string `json:"version"`
		Server   string `json:"server"`
	} `json:"pulumi"`
}

// listPackages lists the packages directly inside a node_modules directory (scoped ones too).
func listPackages(nodeModules string) ([]packageInfo, error) {
	var out []packageInfo
	entries, err := os.ReadDir(nodeModules)
	if err != nil {
		return nil, err
	}
	read := func(dir string) {
		b, err := os.ReadFile(filepath.Join(dir, "package.json"))
		if err != nil {
			return
		}
		var pj packageJSON
		if json.Unmarshal(b, &pj) == nil && pj.Name != "" {
			out = append(out, packageInfo{Name: pj.Name, Version: pj.Version})
		}
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if strings.HasPrefix(name, "@") {
			scoped, err := os.ReadDir(filepath.Join(nodeModules, name))
			if err != nil {
				continue
			}
			for _, s := range scoped {
				read(filepath.Join(nodeModules, name, s.Name()))
			}
			continue
		}
		read(filepath.Join(nodeModules, name))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// resourcePackages finds the resource plugins that the program's node_modules declare, nearest
// node_modules first (Node's own resolution order), one entry per plugin name.
func resourcePackages(programDir string) ([]packageInfo, error) {
	seen := map[string]bool{}
	var out []packageInfo
	var scan func(nodeModules string, depth int) error
	scan = func(nodeModules string, depth int) error {
		entries, err := os.ReadDir(nodeModules)
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		var pkgDirs []string
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") {
				continue
			}
			if strings.HasPrefix(name, "@") {
				scoped, err := os.ReadDir(filepath.Join(nodeModules, name))
				if err != nil {
					continue
				}
				for _, s := range scoped {
					pkgDirs = append(pkgDirs, filepath.Join(nodeModules, name, s.Name()))
				}
				continue
			}
			pkgDirs = append(pkgDirs, filepath.Join(nodeModules, name))
		}
		sort.Strings(pkgDirs)
		for _, dir := range pkgDirs {
			b, err := os.ReadFile(filepath.Join(dir, "package.json"))
			if err == nil {
				var pj packageJSON
				if err := json.Unmarshal(b, &pj); err != nil {
					return fmt.Errorf("parsing %s: %w", filepath.Join(dir, "package.json"), err)
				}
				if pj.Pulumi.Resource {
					name := pj.Pulumi.Name
					if name == "" {
						name = strings.TrimPrefix(strings.TrimPrefix(pj.Name, "@pulumi/"), "@")
					}
					v := pj.Pulumi.Version
					if v == "" {
						v = pj.Version
					}
					if v != "" && !strings.HasPrefix(v, "v") {
						v = "v" + v
					}
					if !seen[name] {
						seen[name] = true
						out = append(out, packageInfo{Name: name, Version: v, Server: pj.Pulumi.Server})
					}
				}
			}
			if depth < 4 {
				if err := scan(filepath.Join(dir, "node_modules"), depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for d := programDir; ; d = filepath.Dir(d) {
		if err := scan(filepath.Join(d, "node_modules"), 0); err != nil {
			return nil, err
		}
		if parent := filepath.Dir(d); parent == d {
			break
		}
	}
	return out, nil
}

// shellSplit splits a nodeargs string the way a POSIX shell would split words (quotes, backslashes),
// without any expansion.
func shellSplit(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' {
				escaped = true
			} else {
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, errors.New("unterminated quote or escape")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
