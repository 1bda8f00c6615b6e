package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/steadhq/stead/pkg/agent"
	"github.com/steadhq/stead/pkg/datadir"
	"github.com/steadhq/stead/pkg/join"
	"github.com/steadhq/stead/pkg/server"
)

// agentFlags are `stead agent`'s flags.
type agentFlags struct {
	node          nodeOptions
	server        string
	token         string
	tokenFile     string
	serviceCIDR   string
	clusterCIDR   string
	clusterDomain string
	verbosity     int
}

func newAgentCommand(dataDir *string) *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent --server URL --token T",
		Short: "Run a node that joins a stead server",
		Long: `stead agent makes this machine a node of the cluster whose server it names.
The token is in the server's <data-dir>/agent-token: it pins the cluster's CA,
and lets the agent ask for its node certificate, nothing more.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgent(cmd.Context(), *dataDir, f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.server, "server", "", "URL of the stead server to join (https://host:6443)")
	fs.StringVar(&f.token, "token", "", "join token, from the server's <data-dir>/agent-token (env STEAD_TOKEN)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the join token, instead of --token")
	fs.StringVar(&f.serviceCIDR, "service-cidr", "10.43.0.0/16", "range of Service cluster IPs: the server's --service-cidr")
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", "10.42.0.0/16", "range of pod IPs: the server's --cluster-cidr")
	fs.StringVar(&f.clusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
	fs.StringVar(&f.node.clusterDNSListen, "cluster-dns-listen", "", "extra loopback address (127.0.0.1:PORT) for the cluster DNS server")
	fs.IntVarP(&f.verbosity, "v", "v", 0, "log verbosity (logs go to <data-dir>/logs/stead.log)")
	f.node.register(fs, "(default: the address this machine reaches the server from)")
	return cmd
}

func runAgent(ctx context.Context, dataDir string, f *agentFlags) error {
	began := time.Now()
	if f.server == "" {
		return errors.New("--server is required: the URL of the stead server to join")
	}
	u, err := url.Parse(f.server)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return fmt.Errorf("--server %q: want https://host:port", f.server)
	}
	rawToken, err := agentToken(f)
	if err != nil {
		return err
	}
	token, err := join.ParseToken(rawToken)
	if err != nil {
		return err
	}
	serviceCIDR, err := netip.ParsePrefix(f.serviceCIDR)
	if err != nil {
		return fmt.Errorf("--service-cidr %q: %v", f.serviceCIDR, err)
	}
	clusterCIDR, err := netip.ParsePrefix(f.clusterCIDR)
	if err != nil {
		return fmt.Errorf("--cluster-cidr %q: %v", f.clusterCIDR, err)
	}
	if f.node.clusterDNSListen != "" {
		if err := checkDNSListen(f.node.clusterDNSListen); err != nil {
			return err
		}
	}
	nodeIP, err := agentNodeIP(f.node.nodeIP, u)
	if err != nil {
		return err
	}

	dataDir, err = filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if err := prepareDataDir(dataDir); err != nil {
		return err
	}
	lock, err := datadir.Acquire(dataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	closeLog, err := setupLogging(filepath.Join(dataDir, "logs", "stead.log"), f.verbosity)
	if err != nil {
		return err
	}
	defer closeLog()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ignoreBrokenPipe()
	progress := func(line string) { fmt.Fprintln(os.Stderr, "stead: "+line) }

	creds, err := join.Join(ctx, f.server, token, filepath.Join(dataDir, "agent"), f.node.nodeName)
	if err != nil {
		return fmt.Errorf("join %s: %w", f.server, err)
	}
	progress(fmt.Sprintf("joined %s as system:node:%s (%.2fs)", f.server, f.node.nodeName, time.Since(began).Seconds()))
	nc := nodeCluster{
		dataDir:  dataDir,
		nodeIP:   nodeIP,
		client:   creds.ClientConfig(),
		services: creds.ClientConfig(),
		ca:       creds.CA,
		servingCertificate: func(ctx context.Context, client kubernetes.Interface) (tls.Certificate, error) {
			return creds.ServingCertificate(ctx, client, []string{f.node.nodeName}, []net.IP{nodeIP})
		},
		rotateCertificates: func(ctx context.Context, client kubernetes.Interface, serve func(tls.Certificate)) {
			creds.Rotate(ctx, client, []string{f.node.nodeName}, []net.IP{nodeIP}, serve)
		},
		clusterDNSIP:  server.ClusterDNSIP(serviceCIDR).String(),
		clusterDomain: f.clusterDomain,
		serviceCIDR:   serviceCIDR,
		clusterCIDR:   clusterCIDR,
		selfFencing:   true,
	}
	if err := startNode(ctx, nc, f.node, progress); err != nil {
		return err
	}
	progress(fmt.Sprintf("up in %.2fs (node %s of %s)", time.Since(began).Seconds(), f.node.nodeName, f.server))
	<-ctx.Done()
	if f.node.cleanup {
		progress("stopping, and removing the node's pods, mounts, bridge and Service rules (--cleanup)")
		return removeNode(context.WithoutCancel(ctx), dataDir, f.node, clusterCIDR)
	}
	progress(fmt.Sprintf("stopping: pods keep running, and an agent started again within %s adopts them; past that the node fences itself (kills them)", agent.FenceAfter))
	return nil
}

func agentToken(f *agentFlags) (string, error) {
	switch {
	case f.token != "" && f.tokenFile != "":
		return "", errors.New("--token and --token-file: give one")
	case f.token != "":
		return f.token, nil
	case f.tokenFile != "":
		data, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return string(data), nil
	case os.Getenv("STEAD_TOKEN") != "":
		return os.Getenv("STEAD_TOKEN"), nil
	}
	return "", errors.New("--token is required: the server writes it to <data-dir>/agent-token")
}

// agentNodeIP is --node-ip, or else the local address the kernel would
// send from to reach the server (a UDP socket that is only connected:
// nothing is sent).
func agentNodeIP(flag string, server *url.URL) (net.IP, error) {
	if flag != "" {
		ip := net.ParseIP(flag)
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("--node-ip %q is not an IPv4 address", flag)
		}
		return ip, nil
	}
	host := server.Hostname()
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("--server %s: cannot resolve %s (%v); give --node-ip", server, host, err)
	}
	conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: ips[0], Port: 9})
	if err != nil {
		return nil, fmt.Errorf("no route to the server %s (%v); give --node-ip", host, err)
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP, nil
}

// joinHint is the command that joins another machine to this server, or
// "" when the server listens only on loopback, where no machine can join.
func joinHint(cfg server.Config) string {
	u, err := url.Parse(cfg.URL())
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
		return ""
	}
	return strings.Join([]string{"stead agent --server", cfg.URL(), "--token-file", cfg.AgentTokenPath()}, " ")
}
