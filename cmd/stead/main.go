// Command stead is a whole Kubernetes cluster for stateful applications in
// one binary: `stead up` starts it, `stead kubectl` talks to it.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/steadhq/stead/pkg/datadir"
)

func main() {
	// `stead kubectl …` hands the whole command line to the stock kubectl
	// before cobra sees it, so that every kubectl flag and plugin works
	// exactly as with a separate kubectl binary.
	if len(os.Args) > 1 && os.Args[1] == "kubectl" {
		os.Exit(runKubectl(os.Args[1:]))
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
				// Reached only when flags precede "kubectl" (stead --data-dir D kubectl …).
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

func defaultDataDir() string {
	if d := os.Getenv("STEAD_DATA_DIR"); d != "" {
		return d
	}
	return datadir.Default
}
