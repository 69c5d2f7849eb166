// Command pulumi-resource-command is the resource provider behind the @pulumi/command SDK that
// homelab-data's offline toolchain builds (see adrs/0004-offline-pulumi-toolchain.md).
//
// The upstream provider's Go module is not served by the Go module proxy reachable from the build
// machines, and its release binaries cannot be downloaded there, so this is a compatible
// implementation of the resources and functions the @pulumi/command SDK (pinned in package.json)
// registers, built on the pulumi SDK module (which is served):
//
//	command:local:Command    create/update/delete commands run on this machine
//	command:local:run        invoke: run a command once, return stdout/stderr
//	command:remote:Command   the same over SSH (password, private key or ssh-agent; optional jump host)
//	command:remote:CopyFile  copy one local file to the remote host over SSH
//
// The wire contract (property names, defaults, replacement on `triggers`, PULUMI_COMMAND_STDOUT /
// PULUMI_COMMAND_STDERR for update/delete, trimmed trailing newline on stdout/stderr) follows the
// @pulumi/command SDK documentation. Outputs computed from a secret input are secret.
package main

import (
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// version is set at build time from package.json's @pulumi/command pin:
// -ldflags "-X main.version=4.5.0". The engine compares it with the version the SDK asks for.
var version = "0.0.0-dev"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "-version") {
		fmt.Println(version)
		return
	}
	err := provider.Main("command", func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return newCommandProvider(host), nil
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-command: %v\n", err)
		os.Exit(1)
	}
}
