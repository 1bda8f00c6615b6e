// Command statefulset compares stead's StatefulSet controller
// (pkg/statefulset) with upstream's (k8s.io/kubernetes/pkg/controller/
// statefulset) on the same API server, and prints a table:
//
//	go run ./bench/statefulset -stead bin/stead
//
// Scenarios:
//   - ordered: a set of -n replicas, OrderedReady. The time from creating
//     the set to all pods Ready, divided by n, is the controller's overhead
//     per ordinal, since the simulated node makes a pod Ready as soon as it
//     sees it; the gaps are (pod k created − pod k-1 Ready).
//   - parallel: a set of -parallel replicas, Parallel, to all Ready.
//
// Every measurement gets a fresh `stead server --statefulset-controller=none`
// (control plane only, no StatefulSet controller of its own), and this
// process runs the controller under test against it with the admin
// kubeconfig: both controllers run in the same process with the same client
// rate limits, informers and workers, so only their code differs. Each run
// alternates which controller goes first, since the machine is noisy.
//
// There is no kubelet: this process is the node. It creates a Node that is
// Ready (and renews its Lease, so the node lifecycle controller neither
// taints it nor marks its pods NotReady) and sets each pod Running and
// Ready through the status subresource as soon as its watch sees the pod.
// The pod template names that node in spec.nodeName, so the scheduler never
// sees the pods: its client is rate-limited to 50 requests/s by default
// and 1000 bindings would measure it instead of the controller. -scheduler
// lets it bind them instead, for an end-to-end figure.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	upstream "k8s.io/kubernetes/pkg/controller/statefulset"
	"k8s.io/utils/ptr"

	"github.com/steadhq/stead/pkg/statefulset"
)

const (
	namespace = "bench"
	nodeName  = "bench-node"
	setName   = "web"
)

var (
	qps       = flag.Float64("qps", 1000, "client QPS of the controller and of the simulated node")
	burst     = flag.Int("burst", 2000, "client burst of the controller and of the simulated node")
	workers   = flag.Int("workers", 5, "controller workers (the controller manager's default --concurrent-statefulset-syncs)")
	nodeSyncs = flag.Int("node-workers", 16, "concurrent pod status updates of the simulated node")
	timeout   = flag.Duration("timeout", 5*time.Minute, "give up on a set after this long")
	settle    = flag.Duration("settle", 3*time.Second, "wait after the server is ready, for its start-up work to die down")
	scheduler = flag.Bool("scheduler", false, "let the scheduler bind the pods instead of naming the node in the template")
)

func main() {
	stead := flag.String("stead", "bin/stead", "the stead binary")
	ordered := flag.Int("n", 20, "replicas of the OrderedReady set")
	parallel := flag.Int("parallel", 1000, "replicas of the Parallel set")
	runs := flag.Int("runs", 2, "runs of each scenario with each controller")
	flag.Parse()
	quietKlog()
	if err := run(*stead, *ordered, *parallel, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "statefulset bench:", err)
		os.Exit(1)
	}
}

// quietKlog keeps the controllers' informational logs out of the table.
func quietKlog() {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("alsologtostderr", "false")
	_ = fs.Set("stderrthreshold", "FATAL")
	klog.SetOutput(io.Discard)
}

// controller is what both controllers have in common.
type controller interface {
	Run(ctx context.Context, workers int)
}

var controllers = []struct {
	name string
	make func(ctx context.Context, f informers.SharedInformerFactory, c kubernetes.Interface) controller
}{
	{"stead", func(ctx context.Context, f informers.SharedInformerFactory, c kubernetes.Interface) controller {
		return statefulset.NewStatefulSetController(ctx, f.Core().V1().Pods(), f.Apps().V1().StatefulSets(), f.Core().V1().PersistentVolumeClaims(), f.Apps().V1().ControllerRevisions(), c)
	}},
	{"upstream v1.37.2", func(ctx context.Context, f informers.SharedInformerFactory, c kubernetes.Interface) controller {
		return upstream.NewStatefulSetController(ctx, f.Core().V1().Pods(), f.Apps().V1().StatefulSets(), f.Core().V1().PersistentVolumeClaims(), f.Apps().V1().ControllerRevisions(), c)
	}},
}

type scenario struct {
	name     string
	replicas int
	policy   appsv1.PodManagementPolicyType
	target   string
}

// result is one set's life, times from the Create call.
type result struct {
	allReady time.Duration // the simulated node's last Ready status written
	status   time.Duration // the controller's status.readyReplicas reached replicas
	gaps     []time.Duration
	node     []time.Duration // each pod seen → its Ready status written
	ready    int             // pods Ready when it gave up, if it did
	err      error
}

func run(stead string, nOrdered, nParallel, runs int) error {
	stead, err := filepath.Abs(stead)
	if err != nil {
		return err
	}
	scenarios := []scenario{
		{fmt.Sprintf("OrderedReady, %d replicas", nOrdered), nOrdered, appsv1.OrderedReadyPodManagement, "≤ 50 ms per ordinal"},
		{fmt.Sprintf("Parallel, %d replicas", nParallel), nParallel, appsv1.ParallelPodManagement, "≤ 60 s to all Ready"},
	}
	type row struct {
		i    int
		sc   scenario
		ctrl string
		run  int
		res  result
	}
	var rows []row
	for r := range runs {
		for si, sc := range scenarios {
			order := []int{0, 1}
			if r%2 == 1 {
				order = []int{1, 0}
			}
			for _, i := range order {
				c := controllers[i]
				fmt.Fprintf(os.Stderr, "run %d: %s, %s controller…\n", r+1, sc.name, c.name)
				res, err := measure(stead, sc, c.make)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", sc.name, c.name, err)
				}
				fmt.Fprintf(os.Stderr, "  %s\n", format(sc, res))
				rows = append(rows, row{si, sc, c.name, r + 1, res})
			}
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		if a.i != b.i {
			return a.i - b.i
		}
		return strings.Compare(a.ctrl, b.ctrl)
	})
	binding := "pods name the node in spec.nodeName (no scheduler)"
	if *scheduler {
		binding = "the scheduler binds the pods"
	}
	fmt.Printf("StatefulSet controllers on one fresh `stead server` each, run in this process: client QPS %g burst %d, %d workers, both the same; simulated node (%s, pods Ready the moment they are seen), %s\n\n",
		*qps, *burst, *workers, binding, time.Now().Format("2006-01-02"))
	fmt.Printf("| scenario | controller | run | result | target |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %d | %s | %s |\n", r.sc.name, r.ctrl, r.run, format(r.sc, r.res), r.sc.target)
	}
	return nil
}

func format(sc scenario, r result) string {
	if r.err != nil {
		return fmt.Sprintf("failed after %d/%d Ready: %v", r.ready, sc.replicas, r.err)
	}
	if sc.policy == appsv1.OrderedReadyPodManagement {
		return fmt.Sprintf("%s per ordinal (all Ready %s, status %s); gap p50 %s, p99 %s; node's write p50 %s",
			ms(r.allReady/time.Duration(sc.replicas)), secs(r.allReady), secs(r.status), ms(quantile(r.gaps, 0.5)), ms(quantile(r.gaps, 0.99)), ms(quantile(r.node, 0.5)))
	}
	return fmt.Sprintf("%s to all Ready (status %s)", secs(r.allReady), secs(r.status))
}

func ms(d time.Duration) string   { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// measure starts a fresh server, the node and the controller, and times one
// set to all Ready.
func measure(stead string, sc scenario, newController func(context.Context, informers.SharedInformerFactory, kubernetes.Interface) controller) (result, error) {
	dir, err := os.MkdirTemp("", "stead-bench-sts-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	srv, err := start(stead, []string{"server", "--data-dir", dir, "--https-port", strconv.Itoa(port),
		"--statefulset-controller=none", "--leader-elect=false"}, filepath.Join(dir, "server.log"))
	if err != nil {
		return result{}, err
	}
	defer srv.stop()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, err := waitForAPI(ctx, filepath.Join(dir, "kubeconfig"), srv)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		return result{}, fmt.Errorf("%w\n%s", err, log)
	}
	cfg.QPS, cfg.Burst = float32(*qps), *burst
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return result{}, err
	}
	if err := prepare(ctx, admin); err != nil {
		return result{}, err
	}
	go heartbeat(ctx, admin)
	time.Sleep(*settle)

	node := newSimulatedNode(ctx, admin, sc.replicas)
	defer node.stop()

	// The controller's own client, informers and queue, limited to the
	// bench namespace like the node's, so that nothing else competes.
	ctrlClient, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return result{}, err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(ctrlClient, 0, informers.WithNamespace(namespace))
	ctrl := newController(ctx, factory, ctrlClient)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); ctrl.Run(ctx, *workers) }()

	began := time.Now()
	node.began = began
	if _, err := admin.AppsV1().StatefulSets(namespace).Create(ctx, newSet(sc), metav1.CreateOptions{}); err != nil {
		return result{}, err
	}
	var res result
	select {
	case <-node.allReady:
	case <-time.After(*timeout):
		res.err = fmt.Errorf("timed out after %v", *timeout)
	case <-srv.done:
		res.err = fmt.Errorf("stead server exited: %v", srv.err)
	}
	if res.err == nil {
		res.err = waitForStatus(ctx, node, sc.replicas, began, &res.status)
	}
	res.allReady, res.gaps, res.node, res.ready = node.results(sc.replicas)
	return res, nil
}

func newSet(sc scenario) *appsv1.StatefulSet {
	labels := map[string]string{"app": setName}
	spec := corev1.PodSpec{
		Containers:                    []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		TerminationGracePeriodSeconds: ptr.To[int64](0),
		AutomountServiceAccountToken:  ptr.To(false),
	}
	if !*scheduler {
		spec.NodeName = nodeName
	}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: setName},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(int32(sc.replicas)),
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			ServiceName:         setName,
			PodManagementPolicy: sc.policy,
			Template:            corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
}

// prepare makes the namespace, waits for its default ServiceAccount (pod
// admission refuses pods until it exists, and the controller's retries
// would be timed) and registers the simulated node.
func prepare(ctx context.Context, c kubernetes.Interface) error {
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"kubernetes.io/hostname": nodeName, "kubernetes.io/os": "linux"}}}
	created, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	room := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("5000"),
	}
	created.Status = corev1.NodeStatus{
		Capacity:    room,
		Allocatable: room,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: nodeName}},
		NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", OperatingSystem: "linux", Architecture: "amd64"},
	}
	if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return err
	}
	for ctx.Err() == nil {
		if _, err := c.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ctx.Err()
}

// heartbeat renews the node's Lease as a kubelet does: a node silent for
// the grace period (40 s) is marked Unknown and its pods NotReady, which
// a 1000-pod run on a busy machine can outlast.
func heartbeat(ctx context.Context, c kubernetes.Interface) {
	leases := c.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	for {
		now := metav1.NewMicroTime(time.Now())
		lease, err := leases.Get(ctx, nodeName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, _ = leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: nodeName},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(nodeName), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now},
			}, metav1.CreateOptions{})
		case err == nil:
			lease.Spec.RenewTime = &now
			_, _ = leases.Update(ctx, lease, metav1.UpdateOptions{})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// simulatedNode is the kubelet of this benchmark: it makes every pod bound
// to it Running and Ready at once, and notes when each pod was first seen
// and when its Ready status was written.
type simulatedNode struct {
	client   kubernetes.Interface
	factory  informers.SharedInformerFactory
	queue    workqueue.TypedInterface[string]
	want     int
	began    time.Time
	allReady chan struct{}
	sets     cache.Store

	mu      sync.Mutex
	seen    map[string]time.Time
	readyAt map[string]time.Time
	ips     int
}

func newSimulatedNode(ctx context.Context, c kubernetes.Interface, want int) *simulatedNode {
	n := &simulatedNode{
		client:   c,
		factory:  informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(namespace)),
		queue:    workqueue.NewTyped[string](),
		want:     want,
		allReady: make(chan struct{}),
		seen:     map[string]time.Time{},
		readyAt:  map[string]time.Time{},
	}
	pods := n.factory.Core().V1().Pods()
	onPod := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		n.mu.Lock()
		if _, ok := n.seen[pod.Name]; !ok {
			n.seen[pod.Name] = time.Now()
		}
		_, done := n.readyAt[pod.Name]
		n.mu.Unlock()
		if !done && pod.Spec.NodeName == nodeName && pod.DeletionTimestamp == nil {
			n.queue.Add(pod.Name)
		}
	}
	_, _ = pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onPod,
		UpdateFunc: func(_, obj any) { onPod(obj) },
	})
	n.sets = n.factory.Apps().V1().StatefulSets().Informer().GetStore()
	n.factory.Start(ctx.Done())
	n.factory.WaitForCacheSync(ctx.Done())
	lister := pods.Lister().Pods(namespace)
	for range *nodeSyncs {
		go func() {
			for {
				name, shutdown := n.queue.Get()
				if shutdown {
					return
				}
				if pod, err := lister.Get(name); err == nil {
					n.makeReady(ctx, pod)
				}
				n.queue.Done(name)
			}
		}()
	}
	return n
}

func (n *simulatedNode) stop() { n.queue.ShutDown() }

func (n *simulatedNode) makeReady(ctx context.Context, pod *corev1.Pod) {
	if pod.Status.Phase == corev1.PodRunning {
		return // made Ready already; this is the echo
	}
	n.mu.Lock()
	n.ips++
	ip := fmt.Sprintf("10.42.%d.%d", n.ips/250, n.ips%250+1)
	n.mu.Unlock()
	for attempt := 0; ctx.Err() == nil; attempt++ {
		pod = pod.DeepCopy()
		now := metav1.Now()
		cond := func(t corev1.PodConditionType) corev1.PodCondition {
			return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
		}
		pod.Status.Phase = corev1.PodRunning
		pod.Status.HostIP, pod.Status.HostIPs = "127.0.0.1", []corev1.HostIP{{IP: "127.0.0.1"}}
		pod.Status.PodIP, pod.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		pod.Status.StartTime = &now
		pod.Status.Conditions = []corev1.PodCondition{
			cond(corev1.PodReadyToStartContainers), cond(corev1.PodInitialized), cond(corev1.ContainersReady),
			cond(corev1.PodReady), cond(corev1.PodScheduled),
		}
		pod.Status.ContainerStatuses = nil
		for _, c := range pod.Spec.Containers {
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: "bench://" + pod.Name + "/" + c.Name,
				Ready: true, Started: ptr.To(true),
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			})
		}
		_, err := n.client.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		if err == nil {
			n.mu.Lock()
			n.readyAt[pod.Name] = time.Now()
			if len(n.readyAt) == n.want {
				close(n.allReady)
			}
			n.mu.Unlock()
			return
		}
		if !apierrors.IsConflict(err) && attempt > 5 {
			fmt.Fprintf(os.Stderr, "  simulated node: %s: %v\n", pod.Name, err)
			return
		}
		if pod, err = n.client.CoreV1().Pods(namespace).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil {
			return
		}
	}
}

// results are the time to the last Ready, the gaps between a pod's
// predecessor becoming Ready and the pod being seen (the controller's
// share), and each pod's time from seen to Ready (the node's share).
func (n *simulatedNode) results(replicas int) (last time.Duration, gaps, node []time.Duration, ready int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range replicas {
		name := fmt.Sprintf("%s-%d", setName, i)
		at, ok := n.readyAt[name]
		if !ok {
			continue
		}
		last = max(last, at.Sub(n.began))
		node = append(node, at.Sub(n.seen[name]))
		if prev, ok := n.readyAt[fmt.Sprintf("%s-%d", setName, i-1)]; ok && i > 0 {
			gaps = append(gaps, n.seen[name].Sub(prev))
		}
	}
	return last, gaps, node, len(n.readyAt)
}

// waitForStatus waits for the controller to count every pod Ready.
func waitForStatus(ctx context.Context, n *simulatedNode, replicas int, began time.Time, took *time.Duration) error {
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		if obj, ok, _ := n.sets.GetByKey(namespace + "/" + setName); ok {
			if obj.(*appsv1.StatefulSet).Status.ReadyReplicas == int32(replicas) {
				*took = time.Since(began)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return fmt.Errorf("status.readyReplicas short of %d after %v", replicas, *timeout)
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exits, with err set
	err  error
}

func start(name string, args []string, logPath string) (*proc, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); log.Close(); close(p.done) }()
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

func waitForAPI(ctx context.Context, kubeconfig string, srv *proc) (*rest.Config, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-srv.done:
			return nil, fmt.Errorf("stead server exited: %v", srv.err)
		case <-time.After(100 * time.Millisecond):
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			continue // not written yet
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return cfg, nil
		}
	}
	return nil, fmt.Errorf("API not ready after 2 minutes")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
