package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
	"k8s.io/component-base/version"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print stead's version and the Kubernetes version it serves",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v := version.Get()
			fmt.Fprintf(cmd.OutOrStdout(), "stead %s (Kubernetes %s, %s, %s/%s)\n", v.GitVersion, kubernetesVersion(v.GitVersion), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

// kubernetesVersion strips stead's suffix: v1.37.2-stead.1 serves v1.37.2.
func kubernetesVersion(gitVersion string) string {
	for i := 1; i < len(gitVersion); i++ {
		if gitVersion[i] == '-' || gitVersion[i] == '+' {
			return gitVersion[:i]
		}
	}
	return gitVersion
}
