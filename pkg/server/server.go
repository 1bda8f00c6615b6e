// Package server runs stead's control plane in one process: etcd (embedded
// or external), the upstream kube-apiserver, the upstream generic
// controllers and scheduler, and stead's own controllers.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/steadhq/stead/pkg/datadir"
	"github.com/steadhq/stead/pkg/fsutil"
	"github.com/steadhq/stead/pkg/join"
	"github.com/steadhq/stead/pkg/pki"
	"github.com/steadhq/stead/pkg/scheduling"
	"github.com/steadhq/stead/pkg/storage"
)

// Server is a running control plane.
type Server struct {
	cfg   Config
	lock  *datadir.Lock
	etcd  *embed.Etcd
	creds *credentials

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error
	failed chan struct{}
	once   sync.Once

	// AdminClient talks to the API server as the cluster administrator.
	AdminClient      kubernetes.Interface
	controllerConfig *rest.Config
	joinToken        join.Token

	clientsMu sync.Mutex
	clients   []clientIdentity // whose certificates renewDue renews
}

// JoinToken is what `stead agent --token` takes to join this cluster.
func (s *Server) JoinToken() join.Token { return s.joinToken }

// ControllerConfig is the client configuration of stead's own controllers:
// their identity and rights, not the administrator's.
func (s *Server) ControllerConfig() *rest.Config { return rest.CopyConfig(s.controllerConfig) }

// Start brings the control plane up and returns once the API server answers
// /readyz and the controllers have been started. It holds the data
// directory's lock until Stop.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	began := time.Now()
	since := func() string { return fmt.Sprintf("%.2fs", time.Since(began).Seconds()) }

	lock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, lock: lock, failed: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel

	logDir := filepath.Join(cfg.DataDir, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, err
	}
	if s.creds, err = ensureCredentials(filepath.Join(cfg.DataDir, "pki"), &cfg); err != nil {
		return nil, err
	}

	etcdServers := cfg.EtcdServers
	etcdCA, etcdCert, etcdKey := cfg.EtcdCAFile, cfg.EtcdCertFile, cfg.EtcdKeyFile
	if len(etcdServers) == 0 {
		e, url, err := startEtcd(ctx, cfg.DataDir, s.creds, filepath.Join(logDir, "etcd.log"))
		if err != nil {
			return nil, err
		}
		s.etcd = e
		etcdServers = []string{url}
		etcdCA, etcdCert, etcdKey = s.creds.ca.CertFile, s.creds.etcdClient, s.creds.etcdClientK
		cfg.Progress("etcd ready (embedded, " + since() + ")")
	} else {
		cfg.Progress("etcd: external " + strings.Join(etcdServers, ","))
	}

	// Kubeconfigs for the admin and for each in-process component: each
	// authenticates with its own certificate so that RBAC and audit see who
	// did what.
	url := cfg.URL()
	ca := s.creds.ca
	kubeconfigs := map[string]string{}
	for _, id := range []clientIdentity{
		{name: "controller-manager", user: controllerManagerUser},
		{name: "scheduler", user: schedulerUser},
		{name: "stead-controller", user: SteadControllerUser},
	} {
		if kubeconfigs[id.name], err = s.ClientKubeconfig(id.name, id.user, id.groups); err != nil {
			return nil, err
		}
	}
	if err := writeKubeconfig(cfg.KubeconfigPath, url, ca, adminUser, adminGroups); err != nil {
		return nil, fmt.Errorf("--write-kubeconfig %s: %w", cfg.KubeconfigPath, err)
	}

	shareETCDConnections()
	s.goRun(runCtx, "kube-apiserver", func(ctx context.Context) error {
		return runAPIServer(ctx, s.apiServerArgs(etcdServers, etcdCA, etcdCert, etcdKey), filepath.Join(cfg.DataDir, "cache", "openapi-v3"))
	})
	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.KubeconfigPath)
	if err != nil {
		return nil, err
	}
	// Not client-go's 5 a second: polling /readyz every 50 ms would use up
	// the burst, and then both the poll and the bootstrap after it (some
	// 20 requests) would wait 200 ms a request.
	restCfg.QPS, restCfg.Burst = 100, 200
	if s.AdminClient, err = kubernetes.NewForConfig(restCfg); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	cfg.Progress("API server ready at " + url + " (" + since() + ")")
	if err := ensureRBAC(ctx, s.AdminClient); err != nil {
		return nil, err
	}
	// kube-system appears a moment after /readyz: retry until then.
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if lastErr = ensureDNSService(ctx, s.AdminClient, cfg.ClusterDNSIP().String()); lastErr != nil {
			return false, nil
		}
		s.joinToken, lastErr = join.EnsureToken(ctx, s.AdminClient, cfg.AgentTokenPath(), ca.Cert.Raw)
		return lastErr == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("kube-system objects: %w (last error: %v)", err, lastErr)
	}
	if err := storage.EnsureClass(ctx, s.AdminClient); err != nil {
		return nil, err
	}
	if s.controllerConfig, err = clientcmd.BuildConfigFromFlags("", kubeconfigs["stead-controller"]); err != nil {
		return nil, err
	}
	// The controller manager's defaults (--kube-api-qps 20, burst 30):
	// a scale-out of hundreds of pods is paced by the controller, not by
	// client-go's 5 requests a second.
	s.controllerConfig.QPS, s.controllerConfig.Burst = 20, 30

	leaderElect := "--leader-elect=" + strconv.FormatBool(cfg.LeaderElect)
	// --kube-api-qps and burst above the defaults (20, 30): on a first
	// start the controller manager makes a ServiceAccount for each of its
	// ~45 controllers through one client, three requests each, and at 20 a
	// second the node waited 3-4 s for its podCIDR (the node-ipam
	// controller comes late in that line). The API server is in the same
	// process; max-in-flight still bounds what it takes at once.
	s.goRun(runCtx, "kube-controller-manager", func(ctx context.Context) error {
		return runControllerManager(ctx, []string{
			"--kubeconfig=" + kubeconfigs["controller-manager"],
			leaderElect,
			"--secure-port=0",
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + s.creds.saKey,
			"--root-ca-file=" + ca.CertFile,
			"--cluster-signing-cert-file=" + ca.CertFile,
			"--cluster-signing-key-file=" + ca.KeyFile,
			"--allocate-node-cidrs=true",
			"--cluster-cidr=" + cfg.ClusterCIDR,
			"--service-cluster-ip-range=" + cfg.ServiceCIDR,
			"--configure-cloud-routes=false",
			"--kube-api-qps=100",
			"--kube-api-burst=200",
			"--profiling=false",
		})
	})
	// The scheduler's configuration file names its kubeconfig and puts
	// pkg/scheduling's plugin in VolumeBinding's place.
	schedulerConfig := filepath.Join(cfg.DataDir, "scheduler.yaml")
	if err := fsutil.WriteFile(schedulerConfig, scheduling.Configuration(kubeconfigs["scheduler"]), 0o600); err != nil {
		return nil, err
	}
	s.goRun(runCtx, "kube-scheduler", func(ctx context.Context) error {
		return runScheduler(ctx, []string{
			"--config=" + schedulerConfig,
			leaderElect,
			"--secure-port=0",
		})
	})
	s.goRun(runCtx, "stead controllers", s.runSteadControllers)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.renewCertificates(runCtx)
	}()
	cfg.Progress("controllers and scheduler started (" + since() + ")")
	ok = true
	return s, nil
}

func (s *Server) apiServerArgs(etcdServers []string, etcdCA, etcdCert, etcdKey string) []string {
	c, cr := &s.cfg, s.creds
	issuer := "https://kubernetes.default.svc." + c.ClusterDomain
	// Without peers (apiendpoint.go) stead publishes the endpoints: the
	// lease reconciler would publish a loopback address, which Endpoints
	// validation rejects, or the host's, where the server does not listen.
	reconciler := "none"
	if s.leaseReconciled() {
		reconciler = "lease"
	}
	args := []string{
		"--etcd-servers=" + strings.Join(etcdServers, ","),
		"--bind-address=" + c.BindAddress,
		"--secure-port=" + strconv.Itoa(c.HTTPSPort),
		"--tls-cert-file=" + cr.servingChain,
		"--tls-private-key-file=" + cr.servingKey,
		"--client-ca-file=" + cr.ca.CertFile,
		"--anonymous-auth=false",
		"--enable-bootstrap-token-auth=true",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--service-account-issuer=" + issuer,
		"--service-account-key-file=" + cr.saPub,
		"--service-account-signing-key-file=" + cr.saKey,
		"--service-cluster-ip-range=" + c.ServiceCIDR,
		"--kubelet-client-certificate=" + cr.kubeletCert,
		"--kubelet-client-key=" + cr.kubeletKey,
		"--kubelet-certificate-authority=" + cr.ca.CertFile,
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--endpoint-reconciler-type=" + reconciler,
		// Priority and fairness guards a shared multi-tenant API server; on
		// a one-binary cluster it costs memory and start time for nothing.
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--shutdown-delay-duration=0s",
	}
	if etcdCA != "" {
		args = append(args, "--etcd-cafile="+etcdCA)
	}
	if etcdCert != "" {
		args = append(args, "--etcd-certfile="+etcdCert, "--etcd-keyfile="+etcdKey)
	}
	return args
}

// waitReady polls /readyz until the API server is up, failing early if the
// API server goroutine has already returned an error.
func (s *Server) waitReady(ctx context.Context) error {
	rc := s.AdminClient.Discovery().RESTClient()
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-s.failed:
			return false, s.Err()
		default:
		}
		body, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return true, nil
		}
		lastErr = err
		return false, nil
	})
	if err != nil && lastErr != nil && s.Err() == nil {
		return fmt.Errorf("API server not ready: %w (last: %v)", err, lastErr)
	}
	return err
}

// goRun runs a component until ctx ends; a component that returns early
// fails the whole server, since a control plane missing a part is broken.
func (s *Server) goRun(ctx context.Context, name string, run func(context.Context) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := run(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("exited")
		}
		s.fail(fmt.Errorf("%s: %w", name, err))
	}()
}

func (s *Server) fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
	s.once.Do(func() { close(s.failed) })
}

// Err is the first failure of a component, if any.
func (s *Server) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Failed is closed when a component fails.
func (s *Server) Failed() <-chan struct{} { return s.failed }

// Config is the configuration the server runs with, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Stop stops every component, then etcd, then releases the data dir.
func (s *Server) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	if s.etcd != nil {
		stopEtcd(s.etcd)
	}
	s.lock.Release()
}

// ClientKubeconfig gives an in-process client (a component, or the node in
// `stead up`) the kubeconfig <data-dir>/cred/<name>.kubeconfig for user in
// groups, and returns its path. Its certificate is renewed while the server
// runs (renewCertificates).
func (s *Server) ClientKubeconfig(name, user string, groups []string) (string, error) {
	id := clientIdentity{name: name, user: user, groups: groups}
	path, err := writeComponentKubeconfig(filepath.Join(s.cfg.DataDir, "cred"), s.cfg.URL(), s.creds.ca, id)
	if err != nil {
		return "", fmt.Errorf("kubeconfig for %s: %w", name, err)
	}
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	if !slices.ContainsFunc(s.clients, func(c clientIdentity) bool { return c.name == name }) {
		s.clients = append(s.clients, id)
	}
	return path, nil
}

// certificateCheck is how often a running server looks for certificates
// that come due.
var certificateCheck = time.Hour

// renewCertificates renews certificates as they come due while the server
// runs, so that one running for longer than their year never fails: the
// API server reloads its serving certificate from disk when it changes,
// etcd and the API server's clients of etcd and of kubelets read theirs at
// every new connection, and client-go reloads the in-process clients'
// certificate files. Failures are retried at the next look. (Between the
// new key and the new chain being written, the API server logs once that
// the pair does not match and keeps serving the old one.)
func (s *Server) renewCertificates(ctx context.Context) {
	atEachCertificateCheck(ctx, func() {
		if err := s.renewDue(); err != nil {
			klog.ErrorS(err, "renew certificates")
		}
	})
}

// atEachCertificateCheck runs check every certificateCheck until ctx ends,
// the first time a period from now: the start has just made or checked
// every certificate.
func atEachCertificateCheck(ctx context.Context, check func()) {
	_ = wait.PollUntilContextCancel(ctx, certificateCheck, false, func(context.Context) (bool, error) {
		check()
		return false, nil
	})
}

// renewDue renews every certificate that is due: the server's own, the
// in-process clients', and the one in the administrator's kubeconfig.
func (s *Server) renewDue() error {
	if _, err := ensureCredentials(s.creds.dir, &s.cfg); err != nil {
		return err
	}
	s.clientsMu.Lock()
	clients := slices.Clone(s.clients)
	s.clientsMu.Unlock()
	for _, id := range clients {
		if _, err := s.ClientKubeconfig(id.name, id.user, id.groups); err != nil {
			return err
		}
	}
	if kubeconfigDue(s.cfg.KubeconfigPath) {
		if err := writeKubeconfig(s.cfg.KubeconfigPath, s.cfg.URL(), s.creds.ca, adminUser, adminGroups); err != nil {
			return fmt.Errorf("--write-kubeconfig %s: %w", s.cfg.KubeconfigPath, err)
		}
		klog.InfoS("renewed the administrator's client certificate", "kubeconfig", s.cfg.KubeconfigPath)
	}
	return nil
}

// IssueServingCertificate signs a serving certificate for a node's kubelet
// API, which the API server verifies with the cluster CA.
func (s *Server) IssueServingCertificate(commonName string, dnsNames []string, ips []net.IP) (tls.Certificate, error) {
	der, key, err := s.creds.ca.Issue(pki.Spec{CommonName: commonName, DNSNames: dnsNames, IPs: ips, Server: true}, clientValidity)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM, keyPEM, err := pki.EncodeCertKey(der, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// RenewServingCertificate hands serve a new certificate from
// IssueServingCertificate, for the same names, whenever the one in use
// comes due, until ctx ends. current is the one in use at first.
func (s *Server) RenewServingCertificate(ctx context.Context, current *x509.Certificate, serve func(tls.Certificate)) {
	atEachCertificateCheck(ctx, func() {
		if !pki.Due(current) {
			return
		}
		cert, err := s.IssueServingCertificate(current.Subject.CommonName, current.DNSNames, current.IPAddresses)
		if err != nil {
			klog.ErrorS(err, "renew serving certificate", "name", current.Subject.CommonName)
			return
		}
		current = cert.Leaf
		serve(cert)
	})
}

// CA is the cluster's certificate authority certificate.
func (s *Server) CA() *x509.Certificate { return s.creds.ca.Cert }
