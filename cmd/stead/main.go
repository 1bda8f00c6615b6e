// Command stead is a whole Kubernetes cluster for stateful applications in
// one binary: `stead up` starts it, `stead kubectl` talks to it.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/steadhq/stead/pkg/datadir"
)

// The main goroutine keeps the main thread for itself. A goroutine that
// locks its thread and changes its namespaces (libcontainer's mount source
// thread joins a container's mount namespace) relies on the thread ending
// with it, but Go cannot end the main thread: it keeps it, still in that
// namespace. /proc/self is the main thread's view, so the process then saw
// a dead container's mounts as its own (a memory emptyDir was never found
// to unmount, and its pod stayed Terminating), and that namespace kept the
// container's mounts alive.
func init() { runtime.LockOSThread() }

func main() {
	// `stead kubectl …` hands the whole command line to the stock kubectl
	// before cobra sees it, so that every kubectl flag and plugin works
	// exactly as with a separate kubectl binary.
	if dataDir, args, ok := kubectlArgs(os.Args[1:]); ok {
		if dataDir != "" {
			os.Setenv("STEAD_DATA_DIR", dataDir)
		}
		os.Exit(runKubectl(args))
	}
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "stead: "+err.Error())
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	dataDir := defaultDataDir()
	root := &cobra.Command{
		Use:   "stead",
		Short: "A single-binary Kubernetes cluster for stateful applications",
		Long: `stead is a whole Kubernetes cluster in one binary: the real API server,
controllers and scheduler, a node that runs pods without a runtime daemon, and
a StatefulSet engine where every replica keeps its name, address and disk.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&dataDir, "data-dir", dataDir, "directory for all of stead's state: etcd data, PKI, images, volumes (env STEAD_DATA_DIR)")
	root.AddCommand(
		newUpCommand(&dataDir),
		newServerCommand(&dataDir),
		newAgentCommand(&dataDir),
		newFenceKeeperCommand(&dataDir),
		&cobra.Command{
			Use:                "kubectl [args...]",
			Short:              "Run the stock kubectl against this cluster (KUBECONFIG defaults to <data-dir>/kubeconfig)",
			DisableFlagParsing: true,
			RunE: func(_ *cobra.Command, args []string) error {
				// main hands `stead [--data-dir D] kubectl …` to kubectl before
				// cobra runs; this is for any other way cobra may route here.
				os.Setenv("STEAD_DATA_DIR", dataDir)
				if code := runKubectl(append([]string{"kubectl"}, args...)); code != 0 {
					os.Exit(code)
				}
				return nil
			},
		},
		newImageCommand(&dataDir),
		newVersionCommand(),
	)
	return root
}

// kubectlArgs recognises `stead [--data-dir D] kubectl ARGS…`, the form
// `stead up` prints, and returns the data dir and kubectl's command line
// ("kubectl" ARGS…).
func kubectlArgs(args []string) (dataDir string, kubectl []string, ok bool) {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "kubectl":
			return dataDir, args[i:], true
		case a == "--data-dir" && i+1 < len(args):
			dataDir = args[i+1]
			i++
		case strings.HasPrefix(a, "--data-dir="):
			dataDir = strings.TrimPrefix(a, "--data-dir=")
		default:
			return "", nil, false
		}
	}
	return "", nil, false
}

func defaultDataDir() string {
	if d := os.Getenv("STEAD_DATA_DIR"); d != "" {
		return d
	}
	return datadir.Default
}
