package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/archive"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/asset"
)

type localSpec struct {
	command     string
	dir         string
	interpreter []string
	env         []string
	stdin       string
}

type runResult struct {
	stdout, stderr string
}

// localSpecFrom reads the command stored under key (create/update/delete, or `command` for
// local.run) and how to run it. extraEnv is added after the `environment` input.
func localSpecFrom(m resource.PropertyMap, key string, extraEnv map[string]string) (localSpec, error) {
	spec := localSpec{
		command:     str(m, key),
		dir:         str(m, "dir"),
		interpreter: strList(m, "interpreter"),
		stdin:       str(m, "stdin"),
	}
	env := strMap(m, "environment")
	for k, v := range extraEnv {
		env[k] = v
	}
	spec.env = sortedEnv(env)
	if len(spec.interpreter) == 0 {
		spec.interpreter = []string{"/bin/sh", "-c"}
	}
	return spec, nil
}

func runLocal(ctx context.Context, spec localSpec) (runResult, error) {
	args := append(append([]string{}, spec.interpreter[1:]...), spec.command)
	cmd := exec.CommandContext(ctx, spec.interpreter[0], args...)
	if spec.dir != "" {
		cmd.Dir = spec.dir
	}
	cmd.Env = append(os.Environ(), spec.env...)
	if spec.stdin != "" {
		cmd.Stdin = strings.NewReader(spec.stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := runResult{
		stdout: strings.TrimSuffix(stdout.String(), "\n"),
		stderr: strings.TrimSuffix(stderr.String(), "\n"),
	}
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return res, fmt.Errorf("%w: running %q:\n%s\n%s", err, spec.command, res.stdout, res.stderr)
		}
		return res, fmt.Errorf("running %q: %w", spec.command, err)
	}
	return res, nil
}

// addAssets resolves the assetPaths / archivePaths globs (relative to dir) into the `assets`
// map and the `archive` output, the way the SDK documents them: patterns are matched in order,
// a leading `!` excludes, `**` crosses directories.
func addAssets(outs, ins resource.PropertyMap, dir string) error {
	assetPaths, archivePaths := strList(ins, "assetPaths"), strList(ins, "archivePaths")
	if len(assetPaths) == 0 && len(archivePaths) == 0 {
		return nil
	}
	base := dir
	if base == "" {
		base, _ = os.Getwd()
	}
	if len(assetPaths) > 0 {
		files, err := globFiles(base, assetPaths)
		if err != nil {
			return err
		}
		m := resource.PropertyMap{}
		for _, f := range files {
			a, err := asset.FromPath(filepath.Join(base, f))
			if err != nil {
				return err
			}
			m[resource.PropertyKey(f)] = resource.NewAssetProperty(a)
		}
		outs["assets"] = resource.NewObjectProperty(m)
	}
	if len(archivePaths) > 0 {
		files, err := globFiles(base, archivePaths)
		if err != nil {
			return err
		}
		m := map[string]any{}
		for _, f := range files {
			a, err := asset.FromPath(filepath.Join(base, f))
			if err != nil {
				return err
			}
			m[f] = a
		}
		ar, err := archive.FromAssets(m)
		if err != nil {
			return err
		}
		outs["archive"] = resource.NewArchiveProperty(ar)
	}
	return nil
}

func globFiles(base string, patterns []string) ([]string, error) {
	type rule struct {
		re     *regexp.Regexp
		negate bool
	}
	var rules []rule
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		re, err := globRegexp(strings.TrimPrefix(p, "!"))
		if err != nil {
			return nil, fmt.Errorf("glob %q: %w", p, err)
		}
		rules = append(rules, rule{re, neg})
	}
	var out []string
	err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(base, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		keep := false
		for _, r := range rules {
			if r.re.MatchString(rel) {
				keep = !r.negate
			}
		}
		if keep {
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// globRegexp turns a glob (`*`, `?`, `**`, `[...]`) into an anchored regexp over slash paths,
// with the semantics the SDK documents (github.com/gobwas/glob with '/' as separator).
func globRegexp(g string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch c {
		case '*':
			if i+1 < len(g) && g[i+1] == '*' {
				i++
				b.WriteString(".*") // `**` crosses directories
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		case '[':
			j := strings.IndexByte(g[i:], ']')
			if j < 0 {
				b.WriteString(regexp.QuoteMeta(string(c)))
				continue
			}
			b.WriteString(g[i : i+j+1])
			i += j
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}
