package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/steadhq/stead/pkg/server"
)

// serverFlags are the flags `stead up` and `stead server` share.
type serverFlags struct {
	cfg              server.Config
	clusterDNSListen string
	verbosity        int
	pprofListen      string
	node             nodeOptions
}

func (f *serverFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.cfg.BindAddress, "bind-address", "127.0.0.1", "address the API server listens on")
	fs.IntVar(&f.cfg.HTTPSPort, "https-port", 6443, "port the API server serves HTTPS on")
	fs.StringVar(&f.cfg.KubeconfigPath, "write-kubeconfig", "", "where to write the admin kubeconfig, mode 0600 (default <data-dir>/kubeconfig)")
	fs.StringSliceVar(&f.cfg.EtcdServers, "etcd-servers", nil, "external etcd endpoints (https://host:port,…) instead of the embedded etcd")
	fs.StringVar(&f.cfg.EtcdCAFile, "etcd-cafile", "", "CA that signed the external etcd's serving certificate")
	fs.StringVar(&f.cfg.EtcdCertFile, "etcd-certfile", "", "client certificate for the external etcd")
	fs.StringVar(&f.cfg.EtcdKeyFile, "etcd-keyfile", "", "client key for the external etcd")
	fs.StringSliceVar(&f.cfg.TLSSANs, "tls-san", nil, "extra names and addresses for the API server's certificate")
	fs.StringVar(&f.cfg.ServiceCIDR, "service-cidr", "10.43.0.0/16", "range of Service cluster IPs")
	fs.StringVar(&f.cfg.ClusterCIDR, "cluster-cidr", "10.42.0.0/16", "range of pod IPs, split into one podCIDR per node")
	fs.StringVar(&f.cfg.StatefulSetController, "statefulset-controller", "stead", "StatefulSet controller to run: stead, or none to leave StatefulSets to one run elsewhere")
	fs.StringVar(&f.clusterDNSListen, "cluster-dns-listen", "", "extra loopback address (127.0.0.1:PORT) for the cluster DNS server")
	fs.StringVar(&f.pprofListen, "debug-pprof-listen", "", "serve Go's pprof profiles on this loopback address, for profiling stead itself")
	_ = fs.MarkHidden("debug-pprof-listen")
	fs.IntVarP(&f.verbosity, "v", "v", 0, "log verbosity of the upstream components (logs go to <data-dir>/logs/stead.log)")
}

func newUpCommand(dataDir *string) *cobra.Command {
	f := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a whole cluster in this process: control plane and node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServer(cmd.Context(), *dataDir, f, true)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().BoolVar(&f.cfg.LeaderElect, "leader-elect", false, "elect a leader among several servers for the controllers and scheduler")
	f.node.register(cmd.Flags(), "(default: --bind-address, or 127.0.0.1 if that is a wildcard)")
	return cmd
}

func newServerCommand(dataDir *string) *cobra.Command {
	f := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Start the control plane only: etcd, API server, controllers, scheduler",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServer(cmd.Context(), *dataDir, f, false)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().BoolVar(&f.cfg.LeaderElect, "leader-elect", true, "elect a leader among several servers for the controllers and scheduler")
	return cmd
}

func runServer(ctx context.Context, dataDir string, f *serverFlags, withNode bool) error {
	if f.clusterDNSListen != "" {
		if err := checkDNSListen(f.clusterDNSListen); err != nil {
			return err
		}
	}
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if err := prepareDataDir(dataDir); err != nil {
		return err
	}
	closeLog, err := setupLogging(filepath.Join(dataDir, "logs", "stead.log"), f.verbosity)
	if err != nil {
		return err
	}
	defer closeLog()

	if f.pprofListen != "" {
		if err := servePprof(f.pprofListen); err != nil {
			return err
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ignoreBrokenPipe()

	began := time.Now()
	cfg := f.cfg
	cfg.DataDir = dataDir
	cfg.Progress = func(line string) { fmt.Fprintln(os.Stderr, "stead: "+line) }
	srv, err := server.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.Stop()
	if withNode {
		f.node.clusterDNSListen = f.clusterDNSListen
		nc, err := inProcessNode(srv, f.node)
		if err != nil {
			return err
		}
		if err := startNode(ctx, nc, f.node, cfg.Progress); err != nil {
			return err
		}
	} else {
		// Pods of the nodes that join reach the API server where they do.
		if addr, ok := srv.ReachableAddress(); ok {
			if err := srv.PublishAPIEndpoint(ctx, addr); err != nil {
				return err
			}
		}
		if f.clusterDNSListen != "" {
			if err := startHostClusterDNS(ctx, srv.ControllerConfig(), f.clusterDNSListen, srv.Config().ClusterDomain, cfg.Progress); err != nil {
				return err
			}
		}
	}
	collectForIdle()
	kubeconfig := srv.Config().KubeconfigPath
	fmt.Fprintf(os.Stderr, "stead: up in %.2fs. Kubeconfig: %s\n", time.Since(began).Seconds(), kubeconfig)
	fmt.Fprintf(os.Stderr, "stead: try   %s\n", kubectlHint(dataDir, kubeconfig))
	if hint := joinHint(srv.Config()); hint != "" {
		fmt.Fprintf(os.Stderr, "stead: nodes join with   %s\n", hint)
	}

	var failed error
	select {
	case <-ctx.Done():
	case <-srv.Failed():
		// The node first: the API server's shutdown waits for its
		// clients' connections to end, and the node's would not.
		stop()
		failed = srv.Err()
	}
	if withNode && f.node.cleanup {
		cfg.Progress("stopping, and removing the node's pods, mounts, bridge and Service rules (--cleanup)")
		return errors.Join(failed, removeNode(context.WithoutCancel(ctx), dataDir, f.node, netip.MustParsePrefix(srv.Config().ClusterCIDR)))
	}
	if failed == nil {
		cfg.Progress("stopping")
	}
	return failed
}

// kubectlHint is the command that reaches this cluster from a shell.
func kubectlHint(dataDir, kubeconfig string) string {
	switch {
	case kubeconfig != filepath.Join(dataDir, "kubeconfig"):
		return "KUBECONFIG=" + kubeconfig + " stead kubectl get nodes"
	case dataDir == defaultDataDir():
		return "stead kubectl get nodes"
	default:
		return "stead --data-dir " + dataDir + " kubectl get nodes"
	}
}

// prepareDataDir makes the data dir if needed and refuses what cannot be one.
func prepareDataDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("--data-dir %s: exists and is not a directory", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
		return fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	return nil
}
