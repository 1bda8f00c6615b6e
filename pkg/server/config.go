package server

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
)

// Config is what `stead server` and `stead up` are started with.
type Config struct {
	DataDir     string
	BindAddress string
	HTTPSPort   int
	// EtcdServers, when set, replaces the embedded etcd with an external
	// cluster; EtcdCAFile, EtcdCertFile and EtcdKeyFile authenticate to it.
	EtcdServers  []string
	EtcdCAFile   string
	EtcdCertFile string
	EtcdKeyFile  string
	// KubeconfigPath is where the admin kubeconfig is written.
	KubeconfigPath string
	TLSSANs        []string
	ServiceCIDR    string
	ClusterCIDR    string
	ClusterDomain  string
	LeaderElect    bool
	// StatefulSetController is "stead" (pkg/statefulset) or "none", which
	// leaves StatefulSets to a controller run elsewhere, e.g. upstream's by
	// bench/statefulset, against the same API server.
	StatefulSetController string
	// Progress receives one line per milestone, for the user watching.
	Progress func(string)
}

// Defaults fills what the caller left empty.
func (c *Config) Defaults() {
	if c.BindAddress == "" {
		c.BindAddress = "127.0.0.1"
	}
	if c.HTTPSPort == 0 {
		c.HTTPSPort = 6443
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = "10.43.0.0/16"
	}
	if c.ClusterCIDR == "" {
		c.ClusterCIDR = "10.42.0.0/16"
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.KubeconfigPath == "" {
		c.KubeconfigPath = filepath.Join(c.DataDir, "kubeconfig")
	}
	if c.StatefulSetController == "" {
		c.StatefulSetController = "stead"
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
}

// Validate names the flag at fault in what it rejects.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("--data-dir must not be empty")
	}
	if net.ParseIP(c.BindAddress) == nil {
		return fmt.Errorf("--bind-address %q is not an IP address", c.BindAddress)
	}
	if c.HTTPSPort < 1 || c.HTTPSPort > 65535 {
		return fmt.Errorf("--https-port %d is not a port (1-65535)", c.HTTPSPort)
	}
	if _, err := netip.ParsePrefix(c.ServiceCIDR); err != nil {
		return fmt.Errorf("--service-cidr %q: %v", c.ServiceCIDR, err)
	}
	if _, err := netip.ParsePrefix(c.ClusterCIDR); err != nil {
		return fmt.Errorf("--cluster-cidr %q: %v", c.ClusterCIDR, err)
	}
	if c.StatefulSetController != "stead" && c.StatefulSetController != "none" {
		return fmt.Errorf("--statefulset-controller %q: must be stead or none", c.StatefulSetController)
	}
	return nil
}

// AgentTokenPath is where the join token for `stead agent` is written.
func (c *Config) AgentTokenPath() string { return filepath.Join(c.DataDir, "agent-token") }

// URL is where clients reach the API server.
func (c *Config) URL() string {
	host := c.BindAddress
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(c.HTTPSPort))
}

// apiServiceIP is the first address of the service range, which the API
// server gives to the `kubernetes` Service.
func (c *Config) apiServiceIP() net.IP {
	p := netip.MustParsePrefix(c.ServiceCIDR)
	return net.IP(p.Masked().Addr().Next().AsSlice())
}

// ClusterDNSIP is the cluster DNS address of this server's service range.
func (c *Config) ClusterDNSIP() net.IP { return ClusterDNSIP(netip.MustParsePrefix(c.ServiceCIDR)) }

// ClusterDNSIP is the tenth address of a service range, by the same
// convention as kubeadm and k3s (10.43.0.10 by default): where pods' resolv.conf
// points, on every node.
func ClusterDNSIP(serviceCIDR netip.Prefix) net.IP {
	a := serviceCIDR.Masked().Addr()
	for range 10 {
		a = a.Next()
	}
	return net.IP(a.AsSlice())
}
