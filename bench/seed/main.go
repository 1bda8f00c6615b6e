// Command seed measures the seed StatefulSet (test/e2e/seed_test.go) and
// pod start-up on a real `stead up`, and prints a table:
//
//	go run ./bench/seed -stead bin/stead -images bin/testimages
//
// It starts the binary on a fresh data dir under /tmp, with a port, bridge,
// pod and Service ranges and kubelet port of its own (so it does not collide
// with other clusters on the machine), waits for it to be up and its node
// Ready, and imports busybox.tar and nginx.tar from -images. Then:
//
//   - Seed set to Ready: `stead kubectl apply` of the seed manifest (headless
//     Service nginx and StatefulSet web, 2 nginx:1.9.1 replicas with a 1Gi
//     claim each), timed from the exec of kubectl to a watch seeing the
//     set's status.readyReplicas == 2, -runs times, each in a fresh
//     namespace (the previous one deleted and gone first).
//   - Pod start latency: -pods busybox pods created at once. Per pod, from
//     the API's timestamps (Ready's lastTransitionTime − creationTimestamp,
//     1 s resolution), and from this process's clocks (its Create call
//     returning → its watch seeing the pod Ready; and → seeing it bound to
//     the node, the scheduler's share).
//   - Processes per pod beyond the app's own: every host process whose
//     cgroup is the pod's (<cgroup parent "stead">/pod<uid>) but not one of
//     its containers' (pod<uid>/<container id>), which is where a pause
//     container would be, plus every process outside the pod's cgroup whose
//     command line names the pod's UID or a container ID (a shim, a
//     conmon), plus the growth in stead's children outside any pod's cgroup
//     between 0 pods and -pods pods, spread over the pods.
//   - stead's VmRSS with 0 pods (up, images imported, -settle later) and
//     with the -pods pods running.
//
// With -agent, the cluster is a `stead server` and a `stead agent` that
// joins it on this machine (loopback), and the memory measured is the
// agent's alone: the node without the control plane; its fence keeper's
// is printed beside it.
//
// At the end (and on failure or interrupt) stead gets SIGTERM, then the
// containers it leaves running by design are killed, the mounts under the
// data dir unmounted, the bridge and its nft table deleted, and the data dir
// removed, as test/e2e's cleanupNode does.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// seedManifest is the tutorial's web.yaml, read at start.
var seedManifest string

var (
	steadBin  = flag.String("stead", "bin/stead", "the stead binary")
	images    = flag.String("images", "bin/testimages", "directory with busybox.tar and nginx.tar (go run ./hack/testimages -out DIR)")
	runs      = flag.Int("runs", 3, "times the seed set is applied, each in a fresh namespace")
	nPods     = flag.Int("pods", 20, "busybox pods created at once")
	timeout   = flag.Duration("timeout", 5*time.Minute, "give up on a step after this long")
	settle    = flag.Duration("settle", 10*time.Second, "wait after start-up (and before reading RSS) for its work to die down")
	manifest  = flag.String("manifest", "docs/examples/web.yaml", "the seed's StatefulSet, as the tutorial and the e2e test apply it")
	agentMode = flag.Bool("agent", false, "run `stead server` and a `stead agent` joining it, and measure the agent alone, instead of `stead up`")
)

func main() {
	flag.Parse()
	data, err := os.ReadFile(*manifest)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/seed:", err)
		os.Exit(2)
	}
	seedManifest = string(data)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "seed bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

type row struct{ metric, value, target string }

func run(ctx context.Context) (err error) {
	bin, err := filepath.Abs(*steadBin)
	if err != nil {
		return err
	}
	imgDir, err := filepath.Abs(*images)
	if err != nil {
		return err
	}
	c, err := newCluster(bin)
	if err != nil {
		return err
	}
	defer c.cleanup()
	if err := c.start(ctx); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, bin, "image", "import", "--data-dir", c.dir,
		filepath.Join(imgDir, "busybox.tar"), filepath.Join(imgDir, "nginx.tar")).CombinedOutput(); err != nil {
		return fmt.Errorf("stead image import: %v\n%s", err, out)
	}
	if err := c.waitNodeReady(ctx); err != nil {
		return err
	}
	logf("up, images imported, node Ready; settling %v", *settle)
	if err := sleep(ctx, *settle); err != nil {
		return err
	}
	rss0, err := rss(c.pid())
	if err != nil {
		return err
	}
	base := scanProcs(c.pid(), nil)

	// 1. The seed set, -runs times.
	var seed, applies []time.Duration
	for i := range *runs {
		ns := fmt.Sprintf("seed-%d", i+1)
		took, apply, err := c.seedOnce(ctx, ns)
		if err != nil {
			return fmt.Errorf("seed run %d: %w", i+1, err)
		}
		logf("seed run %d: Ready in %s (kubectl apply itself %s)", i+1, secs(took), secs(apply))
		seed, applies = append(seed, took), append(applies, apply)
		if err := c.deleteNamespace(ctx, ns); err != nil {
			return err
		}
	}

	// 2. Pod start latency.
	ps, err := c.podStart(ctx, "podstart", *nPods)
	if err != nil {
		return err
	}
	logf("%d pods Ready: watch p50 %s p99 %s, API p50 %s p99 %s", *nPods, ms(quantile(ps.watch, 0.5)), ms(quantile(ps.watch, 0.99)),
		secs(quantile(ps.api, 0.5)), secs(quantile(ps.api, 0.99)))
	sorted := slices.Clone(ps.watch)
	slices.Sort(sorted)
	logf("each pod, create returned → Ready seen, sorted: %v", sorted)

	// 3. Processes, and RSS with the pods running.
	with := scanProcs(c.pid(), ps.pods)
	rss20, err := rss(c.pid())
	if err != nil {
		return err
	}
	var app, pause, refs []int
	for _, p := range ps.pods {
		app = append(app, with.app[string(p.UID)])
		pause = append(pause, with.podOnly[string(p.UID)])
		refs = append(refs, with.refs[string(p.UID)])
	}
	growth := max(0, len(with.children)-len(base.children))
	extra := (sum(pause) + sum(refs) + growth)
	logf("stead's children outside pod cgroups: %d with 0 pods %v, %d with %d pods %v", len(base.children), base.children, len(with.children), *nPods, with.children)

	rows := []row{
		{"Seed set to Ready (apply → readyReplicas 2), min / median of " + strconv.Itoa(*runs), secs(slices.Min(seed)) + " / " + secs(quantile(seed, 0.5)), "target ≤ 1 s (docs/design.md)"},
		{"  of which `kubectl apply` itself, median", secs(quantile(applies, 0.5)), ""},
		{fmt.Sprintf("Pod start, %d at once: create returned → watch sees Ready, p50 / p99", *nPods), ms(quantile(ps.watch, 0.5)) + " / " + ms(quantile(ps.watch, 0.99)), "reference"},
		{"  of which create returned → watch sees the pod bound, p50 / p99", ms(quantile(ps.bound, 0.5)) + " / " + ms(quantile(ps.bound, 0.99)), ""},
		{"Pod start, API timestamps (Ready − created, 1 s resolution), p50 / p99", secs(quantile(ps.api, 0.5)) + " / " + secs(quantile(ps.api, 0.99)), "reference"},
		{"App processes per pod (in the container's cgroup), min–max", fmt.Sprintf("%d–%d", slices.Min(app), slices.Max(app)), "1 (sleep)"},
		{"Processes per pod beyond the app's own (pod cgroup outside containers + naming the pod + stead's extra children / pods)",
			fmt.Sprintf("%g (%d + %d + %d/%d)", float64(extra)/float64(*nPods), sum(pause), sum(refs), growth, *nPods), "0"},
		{c.what() + " VmRSS, 0 pods", mb(rss0), "reference"},
		{fmt.Sprintf("%s VmRSS, %d pods running", c.what(), *nPods), mb(rss20), "reference"},
	}
	if *agentMode {
		keeper, err := c.keeperRSS()
		if err != nil {
			return err
		}
		anon, err := procStatus(c.pid(), "RssAnon")
		if err != nil {
			return err
		}
		rows = append(rows, row{fmt.Sprintf("stead agent RssAnon (its own memory, without the binary's file pages), %d pods running", *nPods), mb(anon), ""})
		rows = append(rows, row{"the node's fence keeper, one process per node: RssAnon (its file pages are the binary's, shared with the agent)", mb(keeper), ""})
	}
	fmt.Printf("Seed StatefulSet and pod start on one fresh %s (%s, %d cores, load average %s when the pods were created), %s\n\n",
		c.setup(), hostKernel(), goruntime.NumCPU(), ps.load, time.Now().Format("2006-01-02"))
	fmt.Printf("| metric | value | target / reference |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r.metric, r.value, r.target)
	}
	return nil
}

// cluster is one `stead up` on its own data dir, or with -agent a `stead
// server` (data dir <dir>/server) and a `stead agent` (data dir <dir>).
type cluster struct {
	bin, dir, bridge string
	port, kubelet    int
	cmd              *exec.Cmd // stead up, or the agent
	log              *os.File
	done             chan struct{}
	server           *exec.Cmd
	serverDone       chan struct{}
	cs               *kubernetes.Clientset
	uids             map[string]bool // every pod this bench made, for its cgroups
}

func newCluster(bin string) (*cluster, error) {
	dir, err := os.MkdirTemp("", "stead-bench-seed-")
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, dir: dir, bridge: fmt.Sprintf("stb%d", os.Getpid()%1000), uids: map[string]bool{}}
	if c.port, err = freePort(); err != nil {
		return c, err
	}
	if c.kubelet, err = freePort(); err != nil {
		return c, err
	}
	return c, nil
}

func (c *cluster) pid() int { return c.cmd.Process.Pid }

// controlPlaneDir is the data dir with the admin kubeconfig.
func (c *cluster) controlPlaneDir() string {
	if *agentMode {
		return filepath.Join(c.dir, "server")
	}
	return c.dir
}

// what names the process whose memory is measured.
func (c *cluster) what() string {
	if *agentMode {
		return "stead agent"
	}
	return "stead"
}

func (c *cluster) setup() string {
	if *agentMode {
		return "`stead agent` joined to a `stead server` on this machine"
	}
	return "`stead up`"
}

// keeperRSS is the fence keeper's own memory: RssAnon, since its file
// pages are the stead binary's, shared with the agent.
func (c *cluster) keeperRSS() (int64, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, "run", "fence-keeper.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, err
	}
	return procStatus(pid, "RssAnon")
}

// launch starts one stead command logging to log, and waits for it to say
// it is up.
func launch(ctx context.Context, bin string, log *os.File, args ...string) (*exec.Cmd, chan struct{}, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	deadline := time.After(2 * time.Minute)
	for {
		out, _ := os.ReadFile(log.Name())
		if bytes.Contains(out, []byte("stead: up in ")) {
			return cmd, done, nil
		}
		select {
		case <-done:
			return cmd, done, fmt.Errorf("stead %s exited (%v):\n%s", args[0], waitErr, out)
		case <-deadline:
			return cmd, done, fmt.Errorf("stead %s not up after 2 minutes:\n%s", args[0], out)
		case <-ctx.Done():
			return cmd, done, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *cluster) start(ctx context.Context) error {
	var err error
	if c.log, err = os.Create(filepath.Join(c.dir, "bench-up.log")); err != nil {
		return err
	}
	ranges := []string{"--cluster-cidr", "10.77.0.0/16", "--service-cidr", "10.78.0.0/16"}
	node := append([]string{"--node-bridge", c.bridge, "--kubelet-port", strconv.Itoa(c.kubelet)}, ranges...)
	kubeconfig := filepath.Join(c.controlPlaneDir(), "kubeconfig")
	if *agentMode {
		serverDir := c.controlPlaneDir()
		c.server, c.serverDone, err = launch(ctx, c.bin, c.log, append([]string{"server", "--data-dir", serverDir, "--https-port", strconv.Itoa(c.port)}, ranges...)...)
		if err != nil {
			return err
		}
		c.cmd, c.done, err = launch(ctx, c.bin, c.log, append([]string{"agent", "--data-dir", c.dir,
			"--server", "https://127.0.0.1:" + strconv.Itoa(c.port), "--token-file", filepath.Join(serverDir, "agent-token"),
			"--node-name", fmt.Sprintf("bench-%d", os.Getpid()), "--node-ip", "127.0.0.1"}, node...)...)
	} else {
		c.cmd, c.done, err = launch(ctx, c.bin, c.log, append([]string{"up", "--data-dir", c.dir, "--https-port", strconv.Itoa(c.port)}, node...)...)
	}
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 100, 200
	c.cs, err = kubernetes.NewForConfig(cfg)
	return err
}

func (c *cluster) waitNodeReady(ctx context.Context) error {
	return poll(ctx, *timeout, "a Ready node", func() (bool, error) {
		nodes, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, n := range nodes.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
		}
		return false, nil
	})
}

// namespace makes ns and waits for its default ServiceAccount: pod
// admission refuses pods until it is there, and that wait is not the
// node's.
func (c *cluster) namespace(ctx context.Context, ns string) error {
	if _, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	return poll(ctx, time.Minute, "ServiceAccount "+ns+"/default", func() (bool, error) {
		_, err := c.cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func (c *cluster) deleteNamespace(ctx context.Context, ns string) error {
	if err := c.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		return err
	}
	return poll(ctx, *timeout, "namespace "+ns+" gone", func() (bool, error) {
		_, err := c.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func (c *cluster) kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"kubectl"}, args...)...)
	cmd.Env = append(os.Environ(), "STEAD_DATA_DIR="+c.controlPlaneDir(), "KUBECONFIG=")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// seedOnce applies the seed manifest in a fresh namespace and times it to
// the set's status.readyReplicas == 2, which it then checks against the
// pods and claims.
func (c *cluster) seedOnce(ctx context.Context, ns string) (took, apply time.Duration, err error) {
	if err := c.namespace(ctx, ns); err != nil {
		return 0, 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	w, err := c.cs.AppsV1().StatefulSets(ns).Watch(wctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "web").String()})
	if err != nil {
		return 0, 0, err
	}
	defer w.Stop()
	began := time.Now()
	if out, err := c.kubectl(ctx, seedManifest, "-n", ns, "apply", "-f", "-"); err != nil {
		return 0, 0, fmt.Errorf("kubectl apply: %v\n%s", err, out)
	}
	apply = time.Since(began)
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			return 0, 0, fmt.Errorf("watch: %v", apierrors.FromObject(ev.Object))
		}
		if set, ok := ev.Object.(*appsv1.StatefulSet); ok && set.Status.ReadyReplicas == 2 {
			took = time.Since(began)
			break
		}
	}
	if took == 0 {
		out, _ := c.kubectl(ctx, "", "-n", ns, "get", "statefulset,pods,pvc", "-o", "wide")
		return 0, 0, fmt.Errorf("readyReplicas not 2 within %v (%v):\n%s", *timeout, wctx.Err(), out)
	}
	pods, err := c.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, 0, err
	}
	for _, p := range pods.Items {
		c.uids[string(p.UID)] = true
		if p.Status.Phase != corev1.PodRunning || !ready(&p) {
			return 0, 0, fmt.Errorf("pod %s is %s, Ready %v, with the set's readyReplicas 2", p.Name, p.Status.Phase, ready(&p))
		}
	}
	claims, err := c.cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, 0, err
	}
	if len(pods.Items) != 2 || len(claims.Items) != 2 {
		return 0, 0, fmt.Errorf("%d pods and %d claims, not 2 and 2", len(pods.Items), len(claims.Items))
	}
	for _, pvc := range claims.Items {
		if pvc.Status.Phase != corev1.ClaimBound {
			return 0, 0, fmt.Errorf("claim %s is %s", pvc.Name, pvc.Status.Phase)
		}
	}
	return took, apply, nil
}

type podStartResult struct {
	watch, api []time.Duration
	bound      []time.Duration // create returned → watch sees spec.nodeName
	load       string          // /proc/loadavg when the pods were created
	pods       []corev1.Pod
}

// podStart creates n busybox pods at once and times each to Ready.
func (c *cluster) podStart(ctx context.Context, ns string, n int) (podStartResult, error) {
	var res podStartResult
	if err := c.namespace(ctx, ns); err != nil {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	w, err := c.cs.CoreV1().Pods(ns).Watch(wctx, metav1.ListOptions{})
	if err != nil {
		return res, err
	}
	defer w.Stop()
	var mu sync.Mutex
	created := map[string]time.Time{}
	readyAt := map[string]time.Time{}
	boundAt := map[string]time.Time{}
	load, _ := os.ReadFile("/proc/loadavg")
	res.load = strings.Join(strings.Fields(string(load))[:3], " ")
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sleep-%02d", i)},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{{Name: "sleep", Image: "busybox:1.28.4", Command: []string{"sleep", "3600"}}},
					TerminationGracePeriodSeconds: ptr.To[int64](1),
				},
			}
			if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			created[pod.Name] = time.Now()
			mu.Unlock()
		}()
	}
	go func() { wg.Wait(); close(errs) }()
	for len(readyAt) < n {
		select {
		case err, ok := <-errs:
			if ok {
				return res, fmt.Errorf("create: %w", err)
			}
			errs = nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				out, _ := c.kubectl(ctx, "", "-n", ns, "get", "pods", "-o", "wide")
				return res, fmt.Errorf("%d of %d pods Ready within %v (%v):\n%s", len(readyAt), n, *timeout, wctx.Err(), out)
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if _, seen := boundAt[p.Name]; !seen && p.Spec.NodeName != "" {
				boundAt[p.Name] = time.Now()
			}
			if _, seen := readyAt[p.Name]; !seen && ready(p) {
				readyAt[p.Name] = time.Now()
			}
		}
	}
	wg.Wait()
	pods, err := c.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return res, err
	}
	res.pods = pods.Items
	mu.Lock()
	defer mu.Unlock()
	for _, p := range pods.Items {
		c.uids[string(p.UID)] = true
		res.watch = append(res.watch, readyAt[p.Name].Sub(created[p.Name]))
		res.bound = append(res.bound, boundAt[p.Name].Sub(created[p.Name]))
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				res.api = append(res.api, cond.LastTransitionTime.Sub(p.CreationTimestamp.Time))
			}
		}
	}
	if len(res.api) != n {
		return res, fmt.Errorf("%d of %d pods Ready in a list after the watch saw all", len(res.api), n)
	}
	return res, nil
}

func ready(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// procs is what a scan of /proc found.
type procs struct {
	app      map[string]int // pod UID → processes in one of its containers' cgroups
	podOnly  map[string]int // pod UID → processes in its cgroup but no container's
	refs     map[string]int // pod UID → processes outside its cgroup that name it or a container of it
	children []string       // stead's children in no pod cgroup at all: "pid name"
}

// scanProcs reads every process's cgroup, parent and command line.
func scanProcs(steadPid int, pods []corev1.Pod) procs {
	r := procs{app: map[string]int{}, podOnly: map[string]int{}, refs: map[string]int{}}
	ids := map[string][]string{} // pod UID → container IDs
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if _, id, ok := strings.Cut(cs.ContainerID, "://"); ok {
				ids[string(p.UID)] = append(ids[string(p.UID)], id)
			}
		}
	}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			continue // gone
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cmd := string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		ppid, name := status(pid)
		inAnyPod := strings.Contains(string(cg), "/stead/pod")
		for _, p := range pods {
			uid := string(p.UID)
			switch {
			case strings.Contains(string(cg), "/pod"+uid+"/") && slices.ContainsFunc(ids[uid], func(id string) bool {
				return strings.Contains(string(cg), "/pod"+uid+"/"+id)
			}):
				r.app[uid]++
			case strings.Contains(string(cg), "/pod"+uid):
				r.podOnly[uid]++
				logf("process %d (%s) in pod %s's cgroup but no container's: %s", pid, name, p.Name, cmd)
			case strings.Contains(cmd, uid) || slices.ContainsFunc(ids[uid], func(id string) bool { return strings.Contains(cmd, id) }):
				r.refs[uid]++
				logf("process %d (%s) names pod %s: %s", pid, name, p.Name, cmd)
			}
		}
		if ppid == steadPid && !inAnyPod {
			r.children = append(r.children, fmt.Sprintf("%d %s", pid, name))
		}
	}
	return r
}

func status(pid int) (ppid int, name string) {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			ppid, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if v, ok := strings.CutPrefix(line, "Name:"); ok {
			name = strings.TrimSpace(v)
		}
	}
	return ppid, name
}

// rss is VmRSS of pid, in bytes.
func rss(pid int) (int64, error) { return procStatus(pid, "VmRSS") }

// procStatus is one memory field of /proc/<pid>/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no " + field)
}

// cleanup stops stead with SIGTERM and removes what its node leaves
// behind by design: the containers, the mounts under the data dir (and so
// the claims' loop devices, which clear themselves), the bridge and its nft
// table, the pods' cgroups and the data dir.
func (c *cluster) cleanup() {
	for _, p := range []struct {
		cmd  *exec.Cmd
		done chan struct{}
	}{{c.cmd, c.done}, {c.server, c.serverDone}} {
		if p.cmd == nil || p.cmd.Process == nil {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			logf("stead did not exit within a minute of SIGTERM; killing it")
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	// An agent's fence keeper outlives it by design.
	if data, err := os.ReadFile(filepath.Join(c.dir, "run", "fence-keeper.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if c.log != nil {
		c.log.Close()
	}
	states, _ := filepath.Glob(filepath.Join(c.dir, "run", "state", "*", "state.json"))
	var inits []int
	for _, path := range states {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var st struct {
			Pid int `json:"init_process_pid"`
		}
		if json.Unmarshal(data, &st) == nil && st.Pid > 0 {
			if syscall.Kill(st.Pid, syscall.SIGKILL) == nil {
				inits = append(inits, st.Pid)
			}
		}
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !slices.ContainsFunc(inits, func(pid int) bool { return syscall.Kill(pid, 0) == nil && !zombie(pid) }) {
			break
		}
	}
	for range 3 {
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		var points []string
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 4 && (f[4] == c.dir || strings.HasPrefix(f[4], c.dir+"/")) {
				points = append(points, f[4])
			}
		}
		if len(points) == 0 {
			break
		}
		// Deepest first: by depth, and among equals the later mount first.
		slices.Reverse(points)
		slices.SortStableFunc(points, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
		for _, p := range points {
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				logf("unmount %s: %v", p, err)
			}
		}
	}
	// Loop devices clear themselves once unmounted; detach any left.
	if out, err := exec.Command("losetup", "-a").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if dev, _, ok := strings.Cut(line, ":"); ok && strings.Contains(line, "("+c.dir+"/") {
				_ = exec.Command("losetup", "-d", dev).Run()
			}
		}
	}
	_ = exec.Command("ip", "link", "del", c.bridge).Run()
	_ = exec.Command("nft", "delete", "table", "ip", "stead-proxy-"+c.bridge).Run()
	removed := 0
	for uid := range c.uids {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/stead/pod" + uid)
		if d := "/sys/fs/cgroup/stead/pod" + uid; exists(d) {
			dirs = append(dirs, d) // cgroup v2
		}
		for _, d := range dirs {
			subs, _ := filepath.Glob(d + "/*")
			for _, s := range subs {
				if fi, err := os.Stat(s); err == nil && fi.IsDir() {
					_ = os.Remove(s)
				}
			}
			if os.Remove(d) == nil {
				removed++
			}
		}
	}
	logf("cleanup: %d containers killed, %d pod cgroups of %d pods removed", len(inits), removed, len(c.uids))
	if err := os.RemoveAll(c.dir); err != nil {
		logf("remove %s: %v", c.dir, err)
	}
}

func zombie(pid int) bool {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	_, after, _ := strings.Cut(string(data), ") ")
	return strings.HasPrefix(after, "Z")
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func poll(ctx context.Context, limit time.Duration, what string, f func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %v", what, limit)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func sum(xs []int) (n int) {
	for _, x := range xs {
		n += x
	}
	return n
}

func ms(d time.Duration) string   { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func mb(b int64) string           { return fmt.Sprintf("%d MB", b>>20) }

func hostKernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "linux"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return "Linux " + string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
