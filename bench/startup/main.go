// Command startup measures how fast `stead up` is ready and how much memory
// it holds when idle, and prints a table:
//
//	go run ./bench/startup -stead bin/stead
//
// "cold" is a first start on an empty data dir (PKI and etcd made); "warm"
// is a restart on the same data dir. Times run from exec to the first 200
// from /readyz, to the first successful `stead kubectl get namespaces`, and
// to the node's Ready condition: the design's target is a Ready node
// answering kubectl.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	stead := flag.String("stead", "bin/stead", "the stead binary")
	runs := flag.Int("runs", 3, "starts of each kind")
	idle := flag.Duration("idle", 30*time.Second, "idle time before RSS is read")
	flag.Parse()
	if err := run(*stead, *runs, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "startup:", err)
		os.Exit(1)
	}
}

type sample struct{ readyz, kubectl, nodeReady time.Duration }

func run(stead string, runs int, idle time.Duration) error {
	stead, err := filepath.Abs(stead)
	if err != nil {
		return err
	}
	results := map[string][]sample{}
	var mems []memoryUse
	for range runs {
		dir, err := os.MkdirTemp("", "stead-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		// One port per data dir: the kubeconfig a cold start wrote stays
		// right for the warm start.
		port, err := freePort()
		if err != nil {
			return err
		}
		for _, kind := range []string{"cold", "warm"} {
			measureIdle := kind == "warm"
			if kind == "warm" {
				// Heartbeats are kept to the second: one of the cold run's
				// must not look like it came after the warm start began.
				time.Sleep(time.Second)
			}
			s, m, err := startOnce(stead, dir, port, measureIdle, idle)
			if err != nil {
				log, _ := os.ReadFile(filepath.Join(dir, "bench-up.log"))
				return fmt.Errorf("%s start: %w\n%s", kind, err, log)
			}
			results[kind] = append(results[kind], s)
			if measureIdle {
				mems = append(mems, m)
			}
		}
	}
	fmt.Printf("stead up, %d runs each (median, min-max)\n\n", runs)
	fmt.Printf("| start | exec → /readyz | exec → kubectl get ns | exec → node Ready |\n|---|---|---|---|\n")
	for _, kind := range []string{"cold", "warm"} {
		s := results[kind]
		fmt.Printf("| %s | %s | %s | %s |\n", kind, stats(s, func(x sample) time.Duration { return x.readyz }),
			stats(s, func(x sample) time.Duration { return x.kubectl }), stats(s, func(x sample) time.Duration { return x.nodeReady }))
	}
	// RSS counts the binary's pages that are mapped, shared and clean,
	// apart from the process's own memory; the first depends on how the
	// page cache holds the binary as much as on what stead touches.
	fmt.Printf("\n| memory after %v idle | RSS | anonymous (own) | file (binary's pages) | peak RSS |\n|---|---|---|---|---|\n", idle)
	fmt.Printf("| stead up (no pods), warm starts | %s | %s | %s | %s |\n",
		megabytes(mems, func(m memoryUse) int64 { return m.rss }), megabytes(mems, func(m memoryUse) int64 { return m.anon }),
		megabytes(mems, func(m memoryUse) int64 { return m.file }), megabytes(mems, func(m memoryUse) int64 { return m.peak }))
	return nil
}

// megabytes gives the median, min and max of one figure of several
// readings: the heap grows and shrinks between collections.
func megabytes(mems []memoryUse, f func(memoryUse) int64) string {
	v := make([]int64, len(mems))
	for i := range mems {
		v[i] = f(mems[i]) >> 20
	}
	slices.Sort(v)
	return fmt.Sprintf("%d MB (%d-%d)", v[len(v)/2], v[0], v[len(v)-1])
}

func stats(s []sample, f func(sample) time.Duration) string {
	d := make([]time.Duration, len(s))
	for i := range s {
		d[i] = f(s[i])
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return fmt.Sprintf("%.2fs (%.2f-%.2f)", d[len(d)/2].Seconds(), d[0].Seconds(), d[len(d)-1].Seconds())
}

func startOnce(stead, dir string, port int, measureIdle bool, idle time.Duration) (s sample, mem memoryUse, err error) {
	logFile, err := os.Create(filepath.Join(dir, "bench-up.log"))
	if err != nil {
		return s, mem, err
	}
	defer logFile.Close()
	// --cleanup: the node's bridge and rules go with each stop, as the
	// data dir goes with the benchmark.
	cmd := exec.Command(stead, "up", "--cleanup", "--data-dir", dir, "--https-port", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return s, mem, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	kubectlDone := make(chan error, 1)
	go func() { kubectlDone <- pollKubectl(ctx, stead, dir, began, &s.kubectl) }()
	client, err := pollReadyz(ctx, filepath.Join(dir, "kubeconfig"), began, &s.readyz, exited)
	if err != nil {
		return s, mem, err
	}
	if err := pollNodeReady(ctx, client, began, &s.nodeReady); err != nil {
		return s, mem, err
	}
	if err := <-kubectlDone; err != nil {
		return s, mem, err
	}
	if measureIdle {
		time.Sleep(idle)
		mem, err = memory(cmd.Process.Pid)
	}
	return s, mem, err
}

func pollReadyz(ctx context.Context, kubeconfig string, began time.Time, took *time.Duration, exited <-chan error) (kubernetes.Interface, error) {
	var client kubernetes.Interface
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("stead exited: %v", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if client == nil {
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				continue // not written yet
			}
			cfg.Timeout = time.Second
			// No client-side limit: at client-go's default of 5 a second,
			// polls every 10 ms would use up the burst at once and then
			// see readiness up to 200 ms late.
			cfg.QPS = -1
			if client, err = kubernetes.NewForConfig(cfg); err != nil {
				return nil, err
			}
		}
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			*took = time.Since(began)
			return client, nil
		}
	}
}

// pollNodeReady waits for a Node whose Ready condition is True. A warm
// start finds the Node of the last run, still Ready in the API until the
// node controller's grace period ends, so the condition must have been
// written after this start began (to the second, as the API keeps it).
func pollNodeReady(ctx context.Context, client kubernetes.Interface, began time.Time, took *time.Duration) error {
	for {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, n := range nodes.Items {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !c.LastHeartbeatTime.Time.Before(began.Truncate(time.Second)) {
						*took = time.Since(began)
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func pollKubectl(ctx context.Context, stead, dir string, began time.Time, took *time.Duration) error {
	for ctx.Err() == nil {
		cmd := exec.CommandContext(ctx, stead, "kubectl", "--request-timeout=2s", "get", "namespaces")
		cmd.Env = append(os.Environ(), "STEAD_DATA_DIR="+dir, "KUBECONFIG=")
		if out, err := cmd.CombinedOutput(); err == nil && strings.Contains(string(out), "kube-system") {
			*took = time.Since(began)
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ctx.Err()
}

// memoryUse is a process's resident memory, in bytes.
type memoryUse struct{ rss, anon, file, peak int64 }

// memory reads a process's resident memory from /proc.
func memory(pid int) (m memoryUse, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kb << 10
		case "RssAnon:":
			m.anon = kb << 10
		case "RssFile:":
			m.file = kb << 10
		case "VmHWM:":
			m.peak = kb << 10
		}
	}
	return m, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
