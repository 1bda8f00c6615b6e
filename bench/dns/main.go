// Command dns compares stead's cluster DNS with CoreDNS's kubernetes plugin
// on the same objects of the same cluster, and prints a table:
//
//	go run ./bench/dns -stead bin/stead
//
// It starts `stead up` on a temporary data dir with a loopback DNS
// listener, creates Services (ClusterIP, and headless with three named
// endpoints each), starts CoreDNS against the same API server, checks that
// both give the same answers, then loads each in turn from this process
// over UDP on loopback. CoreDNS runs twice: with the kubernetes plugin
// alone, and with `cache 30` as kubeadm deploys it. Without -coredns, the
// CoreDNS binary is built once with `go install` from the module proxy.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

const corednsModule = "github.com/coredns/coredns@v1.15.0"

var loader string

func main() {
	stead := flag.String("stead", "bin/stead", "the stead binary")
	coredns := flag.String("coredns", "", "a CoreDNS binary (default: built with go install "+corednsModule+")")
	services := flag.Int("services", 300, "ClusterIP Services")
	headless := flag.Int("headless", 100, "headless Services, three endpoints each")
	duration := flag.Duration("duration", 10*time.Second, "load time per server")
	workers := flag.Int("workers", 16, "concurrent clients")
	flag.StringVar(&loader, "loader", "dnsperf", "load generator: dnsperf (Debian's, lighter: measures the servers more than itself) or go (this process)")
	flag.Parse()
	if err := run(*stead, *coredns, *services, *headless, *duration, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "dns bench:", err)
		os.Exit(1)
	}
}

type proc struct {
	cmd  *exec.Cmd
	done chan error
}

func start(name string, args []string, logPath string) (*proc, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); log.Close() }()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func run(stead, coredns string, nServices, nHeadless int, duration time.Duration, workers int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "stead-bench-dns-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if coredns == "" {
		if coredns, err = buildCoreDNS(); err != nil {
			return err
		}
	}

	steadDNS := fmt.Sprintf("127.0.0.1:%d", freePort())
	up, err := start(stead, []string{"up", "--cleanup", "--data-dir", dir, "--https-port", strconv.Itoa(freePort()), "--cluster-dns-listen", steadDNS}, filepath.Join(dir, "up.log"))
	if err != nil {
		return err
	}
	defer up.stop()
	client, err := waitForAPI(ctx, filepath.Join(dir, "kubeconfig"), up)
	if err != nil {
		return err
	}
	names, err := createObjects(ctx, client, nServices, nHeadless)
	if err != nil {
		return err
	}

	servers := []struct{ name, addr string }{{"stead", steadDNS}}
	for _, cfg := range []struct{ name, extra string }{
		{"CoreDNS (kubernetes plugin)", ""},
		{"CoreDNS (kubernetes + cache 30)", "    cache 30\n"},
	} {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort())
		_, port, _ := net.SplitHostPort(addr)
		corefile := filepath.Join(dir, fmt.Sprintf("Corefile.%s", port))
		conf := fmt.Sprintf(".:%s {\n    bind 127.0.0.1\n    kubernetes cluster.local {\n        kubeconfig %s stead\n        pods insecure\n    }\n%s}\n", port, filepath.Join(dir, "kubeconfig"), cfg.extra)
		if err := os.WriteFile(corefile, []byte(conf), 0o600); err != nil {
			return err
		}
		p, err := start(coredns, []string{"-conf", corefile}, filepath.Join(dir, "coredns-"+port+".log"))
		if err != nil {
			return err
		}
		defer p.stop()
		servers = append(servers, struct{ name, addr string }{cfg.name, addr})
	}

	// Same objects, same answers: compare every name before timing anything.
	for _, s := range servers {
		if err := waitAnswers(s.addr, names[len(names)-1], 2*time.Minute); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	for _, name := range names {
		want, err := lookupA(servers[1].addr, name)
		if err != nil {
			return fmt.Errorf("CoreDNS %s: %w", name, err)
		}
		got, err := lookupA(servers[0].addr, name)
		if err != nil || !slices.Equal(got, want) {
			return fmt.Errorf("%s: stead answers %v (%v), CoreDNS %v", name, got, err, want)
		}
	}

	fmt.Printf("cluster DNS, %d ClusterIP + %d headless Services (3 endpoints each), %d names, %d UDP clients (%s), %v each, one machine\n\n", nServices, nHeadless, len(names), workers, loader, duration)
	if loader == "dnsperf" {
		fmt.Printf("| server | queries/s | mean latency | p50 / p99 at %d q/s | vs CoreDNS (plugin) |\n", latencyRate)
	} else {
		fmt.Println("| server | queries/s | latency p50 | p99 | vs CoreDNS (plugin) |")
	}
	fmt.Println("|---|---|---|---|---|")
	var results []result
	for _, s := range servers {
		var r result
		if loader == "dnsperf" {
			r, err = loadDNSPerf(dir, s.addr, names, duration, workers)
			if err != nil {
				return err
			}
			if r.p99, err = latencyDNSPerf(dir, s.addr, workers); err != nil {
				return err
			}
		} else {
			r = load(s.addr, names, duration, workers)
		}
		results = append(results, r)
	}
	for i, s := range servers {
		r := results[i]
		fmt.Printf("| %s | %.0f | %s | %s | %.2fx |\n", s.name, r.qps, r.p50, r.p99, r.qps/results[1].qps)
	}
	return nil
}

// buildCoreDNS installs CoreDNS from the module proxy into a cache dir once.
func buildCoreDNS() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "stead-bench", "coredns-v1.15.0")
	if _, err := os.Stat(filepath.Join(bin, "coredns")); err == nil {
		return filepath.Join(bin, "coredns"), nil
	}
	fmt.Fprintln(os.Stderr, "building CoreDNS ("+corednsModule+"), once…")
	cmd := exec.Command("go", "install", corednsModule)
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-buildvcs=false")
	cmd.Dir = os.TempDir() // outside this module: CoreDNS brings its own dependencies
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %v\n%s", corednsModule, err, out)
	}
	return filepath.Join(bin, "coredns"), nil
}

func waitForAPI(ctx context.Context, kubeconfig string, up *proc) (kubernetes.Interface, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-up.done:
			return nil, fmt.Errorf("stead up exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			continue
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		if _, err := client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return client, nil
		}
	}
	return nil, fmt.Errorf("API not ready")
}

// createObjects makes the Services and endpoints and returns the names to
// query: every ClusterIP Service, every headless Service, every endpoint.
func createObjects(ctx context.Context, client kubernetes.Interface, nServices, nHeadless int) ([]string, error) {
	const ns = "bench"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	var names []string
	port := []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
	for i := range nServices {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%d", i)}, Spec: corev1.ServiceSpec{Ports: port}}
		if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		names = append(names, fmt.Sprintf("svc-%d.%s.svc.cluster.local.", i, ns))
	}
	for i := range nHeadless {
		name := fmt.Sprintf("hl-%d", i)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: port}}
		if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-bench", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		for j := range 3 {
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.42.%d.%d", i/80, 3*(i%80)+j+2)},
				Hostname:   ptr.To(fmt.Sprintf("web-%d", j)),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			})
			names = append(names, fmt.Sprintf("web-%d.%s.%s.svc.cluster.local.", j, name, ns))
		}
		if _, err := client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		names = append(names, fmt.Sprintf("%s.%s.svc.cluster.local.", name, ns))
	}
	return names, nil
}

func lookupA(server, name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	in, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, server)
	if err != nil {
		return nil, err
	}
	if in.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%s", dns.RcodeToString[in.Rcode])
	}
	var ips []string
	for _, rr := range in.Answer {
		if a, ok := rr.(*dns.A); ok {
			ips = append(ips, a.A.String())
		}
	}
	sort.Strings(ips)
	return ips, nil
}

func waitAnswers(server, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ips, err := lookupA(server, name)
		if err == nil && len(ips) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer for %s after %v: %v", name, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type result struct {
	qps      float64
	p50, p99 string // latency; with dnsperf, the mean at full load and the percentiles at latencyRate
}

// latencyRate is the load under which dnsperf's per-query latencies are
// taken: one every server here sustains, so that the percentiles compare
// the servers' answers and not their queues.
const latencyRate = 20000

// loadDNSPerf runs Debian's dnsperf against server with the same names.
func loadDNSPerf(dir, server string, names []string, d time.Duration, clients int) (result, error) {
	data := filepath.Join(dir, "dnsperf.queries")
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n + " A\n")
	}
	if err := os.WriteFile(data, []byte(b.String()), 0o600); err != nil {
		return result{}, err
	}
	host, port, _ := net.SplitHostPort(server)
	out, err := exec.Command("dnsperf", "-s", host, "-p", port, "-d", data, "-l", fmt.Sprint(int(d.Seconds())),
		"-c", fmt.Sprint(clients), "-T", "1", "-q", "64").CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("dnsperf (apt-get install dnsperf, or -loader go): %v\n%s", err, out)
	}
	var r result
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "Queries per second:") && len(f) >= 4:
			r.qps, _ = strconv.ParseFloat(f[3], 64)
		case strings.HasPrefix(strings.TrimSpace(line), "Average Latency (s):") && len(f) >= 4:
			avg, _ := strconv.ParseFloat(f[3], 64)
			r.p50 = fmt.Sprint(time.Duration(avg * float64(time.Second)).Round(time.Microsecond))
		case strings.HasPrefix(strings.TrimSpace(line), "Queries lost:") && len(f) >= 3 && f[2] != "0":
			fmt.Fprintf(os.Stderr, "%s: dnsperf lost %s queries\n", server, f[2])
		}
	}
	if r.qps == 0 {
		return result{}, fmt.Errorf("dnsperf gave no rate:\n%s", out)
	}
	return r, nil
}

// latencyDNSPerf runs dnsperf at latencyRate for 5 s with a line per
// answer and returns its p50 and p99.
func latencyDNSPerf(dir, server string, clients int) (string, error) {
	host, port, _ := net.SplitHostPort(server)
	out, err := exec.Command("dnsperf", "-s", host, "-p", port, "-d", filepath.Join(dir, "dnsperf.queries"), "-l", "5",
		"-c", fmt.Sprint(clients), "-T", "1", "-Q", fmt.Sprint(latencyRate), "-v").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dnsperf -v: %v\n%s", err, out)
	}
	// "> NOERROR name A 0.000123": rcode, query, latency in seconds.
	var latencies []time.Duration
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != ">" {
			continue
		}
		if secs, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			latencies = append(latencies, time.Duration(secs*float64(time.Second)))
		}
	}
	if len(latencies) == 0 {
		return "", fmt.Errorf("dnsperf -v gave no latencies:\n%.2000s", out)
	}
	slices.Sort(latencies)
	n := len(latencies)
	return fmt.Sprintf("%v / %v", latencies[n/2].Round(time.Microsecond), latencies[n*99/100].Round(time.Microsecond)), nil
}

// load sends queries for random names from workers clients, each waiting
// for its answer before the next, for d.
func load(server string, names []string, d time.Duration, workers int) result {
	var count, failed atomic.Int64
	var mu sync.Mutex
	var latencies []time.Duration
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			conn, err := dns.Dial("udp", server)
			if err != nil {
				failed.Add(1)
				return
			}
			defer conn.Close()
			var mine []time.Duration
			m := new(dns.Msg)
			for time.Now().Before(stop) {
				m.SetQuestion(names[rng.IntN(len(names))], dns.TypeA)
				began := time.Now()
				_ = conn.SetDeadline(began.Add(2 * time.Second))
				if err := conn.WriteMsg(m); err != nil {
					failed.Add(1)
					continue
				}
				in, err := conn.ReadMsg()
				if err != nil || in.Rcode != dns.RcodeSuccess || in.Id != m.Id {
					failed.Add(1)
					continue
				}
				mine = append(mine, time.Since(began))
				count.Add(1)
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(latencies)
	r := result{qps: float64(count.Load()) / d.Seconds()}
	if n := len(latencies); n > 0 {
		r.p50, r.p99 = latencies[n/2].Round(time.Microsecond).String(), latencies[n*99/100].Round(time.Microsecond).String()
	}
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "%s: %d failed queries\n", server, f)
	}
	return r
}
