package main

import (
	"os"
	"path/filepath"
	"strings"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// Client auth plugins, as the kubectl binary has them.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

// runKubectl runs the stock kubectl with args (args[0] is "kubectl"). When
// neither KUBECONFIG nor --kubeconfig says otherwise, it talks to the
// cluster whose data dir is $STEAD_DATA_DIR (default /var/lib/stead).
func runKubectl(args []string) int {
	if os.Getenv("KUBECONFIG") == "" && !hasKubeconfigFlag(args) {
		path := filepath.Join(defaultDataDir(), "kubeconfig")
		if _, err := os.Stat(path); err == nil {
			os.Setenv("KUBECONFIG", path)
		}
	}
	// kubectl reads its arguments from os.Args, as its own binary does.
	os.Args = args
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) //nolint:errcheck
	if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err) // prints the error the way kubectl does and exits non-zero
	}
	return 0
}

func hasKubeconfigFlag(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=") {
			return true
		}
	}
	return false
}
