// Package agent is stead's node: it registers the machine as a Node, keeps
// its Lease and status the way the kubelet does, and (once the pod runtime
// is wired in) runs the pods bound to it.
package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	nodeutil "k8s.io/component-helpers/node/util"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// Timings as the kubelet's defaults, so that the node lifecycle controller's
// defaults (40 s grace) judge stead's nodes exactly as it judges kubelets.
const (
	leaseDuration      = 40 * time.Second
	leaseRenewInterval = 10 * time.Second
	statusInterval     = 10 * time.Second
	// statusReportInterval is how often status is written even unchanged.
	statusReportInterval = 5 * time.Minute
)

// RuntimeStatus says whether the node can run pods, and if not, why.
type RuntimeStatus struct {
	Ready   bool
	Reason  string
	Message string
}

// Config describes the node.
type Config struct {
	NodeName string
	NodeIP   net.IP
	// DataDir's filesystem is the node's ephemeral storage.
	DataDir     string
	MaxPods     int
	KubeletPort int32
	Version     string
	// Runtime reports whether pods can run here; the node is Ready only if
	// they can, so that the scheduler never places pods on a node that
	// would leave them pending.
	Runtime func() RuntimeStatus
	// Heartbeat, when set, makes the node fence itself (fence.go): each
	// Lease renewal is recorded there for the fence keeper, and the Node
	// says so with FencingAnnotation.
	Heartbeat Heartbeat
}

// Node keeps one Node object and its Lease up to date.
type Node struct {
	client kubernetes.Interface
	cfg    Config
	now    func() time.Time

	lastReportTime time.Time
	// lastRenewal is when the Lease was last renewed (unix nanoseconds).
	lastRenewal atomic.Int64
}

// NewNode checks cfg and returns a Node that Run will register.
func NewNode(client kubernetes.Interface, cfg Config) (*Node, error) {
	if errs := validateNodeName(cfg.NodeName); errs != "" {
		return nil, fmt.Errorf("--node-name %q: %s", cfg.NodeName, errs)
	}
	if cfg.NodeIP == nil {
		return nil, fmt.Errorf("--node-ip must be set")
	}
	if cfg.MaxPods <= 0 {
		return nil, fmt.Errorf("--max-pods must be positive")
	}
	if cfg.Runtime == nil {
		return nil, fmt.Errorf("agent: no runtime status")
	}
	return &Node{client: client, cfg: cfg, now: time.Now}, nil
}

func validateNodeName(name string) string {
	if name == "" || len(name) > 253 {
		return "must be 1-253 characters"
	}
	for _, part := range strings.Split(name, ".") {
		if part == "" || part[0] == '-' || part[len(part)-1] == '-' {
			return "must be a lower-case DNS subdomain (RFC 1123)"
		}
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return "must be a lower-case DNS subdomain (RFC 1123)"
			}
		}
	}
	return ""
}

// DefaultNodeName is the host name, lower-cased as Node names must be.
func DefaultNodeName() string {
	name, err := os.Hostname()
	if err != nil {
		return "stead"
	}
	return strings.ToLower(name)
}

// Register creates the Node, or takes over the existing one of that name,
// and writes its status once.
//
// The node IPAM and lifecycle controllers write the Node too, so a status
// write that lost a race is retried on the newer object.
func (n *Node) Register(ctx context.Context) error {
	nodes := n.client.CoreV1().Nodes()
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		node, err := nodes.Get(ctx, n.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			node, err = nodes.Create(ctx, n.newNode(), metav1.CreateOptions{})
		}
		if err != nil {
			return err
		}
		if want := n.annotations()[FencingAnnotation]; node.Annotations[FencingAnnotation] != want {
			// null removes the annotation of a node that no longer fences.
			value := "null"
			if want != "" {
				value = strconv.Quote(want)
			}
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, FencingAnnotation, value)
			if node, err = nodes.Patch(ctx, node.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				return err
			}
		}
		return n.updateStatus(ctx, node, true)
	})
	if err != nil {
		return fmt.Errorf("register node %s: %w", n.cfg.NodeName, err)
	}
	return nil
}

// Run renews the node's Lease and keeps its status current until ctx ends;
// a Node that was deleted is registered again, as the kubelet does.
func (n *Node) Run(ctx context.Context) {
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		// Bounded: a renewal stuck on a lost server must not hold up the
		// next one once the server is back.
		ctx, cancel := context.WithTimeout(ctx, leaseRenewInterval)
		defer cancel()
		began := n.now()
		if err := n.renewLease(ctx); err != nil {
			klog.ErrorS(err, "renew node lease", "node", n.cfg.NodeName)
			return
		}
		n.lastRenewal.Store(began.UnixNano())
		if n.cfg.Heartbeat != "" {
			if err := n.cfg.Heartbeat.Beat(began); err != nil {
				klog.ErrorS(err, "record the lease renewal for the fence keeper")
			}
		}
	}, leaseRenewInterval)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		node, err := n.client.CoreV1().Nodes().Get(ctx, n.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			err = n.Register(ctx)
		} else if err == nil {
			err = n.updateStatus(ctx, node, false)
		}
		if err != nil {
			klog.ErrorS(err, "update node status", "node", n.cfg.NodeName)
		}
	}, statusInterval)
}

// Fenced reports whether the node has gone FenceAfter without renewing its
// Lease, and must not start containers: its fence keeper kills them, and
// the server may already have handed its pods' identities to other nodes.
func (n *Node) Fenced() bool {
	last := n.lastRenewal.Load()
	return n.cfg.Heartbeat != "" && last != 0 && n.now().Sub(time.Unix(0, last)) > FenceAfter
}

func (n *Node) annotations() map[string]string {
	if n.cfg.Heartbeat == "" {
		return nil
	}
	return map[string]string{FencingAnnotation: fencingAnnotationValue()}
}

func (n *Node) newNode() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        n.cfg.NodeName,
			Annotations: n.annotations(),
			Labels: map[string]string{
				corev1.LabelHostname:   n.cfg.NodeName,
				corev1.LabelOSStable:   goruntime.GOOS,
				corev1.LabelArchStable: goruntime.GOARCH,
			},
		},
	}
}

func (n *Node) updateStatus(ctx context.Context, node *corev1.Node, force bool) error {
	now := metav1.NewTime(n.now())
	status := n.status(node.Status.Conditions, now)
	// Compared with the Node as the server has it, not as this node last
	// wrote it: the node lifecycle controller sets Ready to Unknown while
	// the node is cut off, and the node must say Ready again once back.
	if !force && statusEqual(status, node.Status) && n.now().Sub(n.lastReportTime) < statusReportInterval {
		return nil
	}
	updated := node.DeepCopy()
	updated.Status = status
	// A patch of the status alone, as the kubelet writes it: an update
	// would carry the spec as this node last read it, and NodeRestriction
	// forbids a node's write that seems to change its taints, which the
	// node lifecycle controller may have changed meanwhile.
	if _, _, err := nodeutil.PatchNodeStatus(n.client.CoreV1(), types.NodeName(n.cfg.NodeName), node, updated); err != nil {
		return err
	}
	n.lastReportTime = n.now()
	return nil
}

// statusEqual compares what matters, ignoring heartbeat times.
func statusEqual(a, b corev1.NodeStatus) bool {
	if len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message {
			return false
		}
	}
	return a.Capacity.Cpu().Equal(*b.Capacity.Cpu()) && a.Capacity.Memory().Equal(*b.Capacity.Memory())
}

func (n *Node) status(old []corev1.NodeCondition, now metav1.Time) corev1.NodeStatus {
	rt := n.cfg.Runtime()
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "stead agent is posting ready status"}
	if !rt.Ready {
		ready.Status, ready.Reason, ready.Message = corev1.ConditionFalse, rt.Reason, rt.Message
	}
	conditions := []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "stead agent has sufficient memory available"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "stead agent has no disk pressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "stead agent has sufficient PID available"},
		ready,
	}
	for i := range conditions {
		c := &conditions[i]
		c.LastHeartbeatTime, c.LastTransitionTime = now, now
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	capacity := n.capacity()
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Conditions:  conditions,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.cfg.NodeIP.String()},
			{Type: corev1.NodeHostName, Address: n.cfg.NodeName},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: n.cfg.KubeletPort}},
		NodeInfo:        n.nodeInfo(),
	}
}

func (n *Node) capacity() corev1.ResourceList {
	list := corev1.ResourceList{
		corev1.ResourceCPU:  *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		corev1.ResourcePods: *resource.NewQuantity(int64(n.cfg.MaxPods), resource.DecimalSI),
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		list[corev1.ResourceMemory] = *resource.NewQuantity(int64(si.Totalram)*int64(si.Unit), resource.BinarySI)
	}
	var fs unix.Statfs_t
	if unix.Statfs(n.cfg.DataDir, &fs) == nil {
		list[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(fs.Blocks)*fs.Bsize, resource.BinarySI)
	}
	return list
}

func (n *Node) nodeInfo() corev1.NodeSystemInfo {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	machineID, _ := os.ReadFile("/etc/machine-id")
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return corev1.NodeSystemInfo{
		MachineID:               strings.TrimSpace(string(machineID)),
		BootID:                  strings.TrimSpace(string(bootID)),
		KernelVersion:           unix.ByteSliceToString(uts.Release[:]),
		OSImage:                 osImage(),
		ContainerRuntimeVersion: "stead://" + n.cfg.Version,
		KubeletVersion:          n.cfg.Version,
		OperatingSystem:         goruntime.GOOS,
		Architecture:            goruntime.GOARCH,
	}
}

func osImage() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "unknown"
}

// renewLease keeps kube-node-lease/<node> fresh: the node lifecycle
// controller reads it to decide that the node is alive.
func (n *Node) renewLease(ctx context.Context) error {
	leases := n.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(n.now())
	lease, err := leases.Get(ctx, n.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: n.cfg.NodeName, Namespace: corev1.NamespaceNodeLease},
		}
		if node, err := n.client.CoreV1().Nodes().Get(ctx, n.cfg.NodeName, metav1.GetOptions{}); err == nil {
			// Owned by the Node, so that deleting the Node deletes it.
			lease.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
		}
		lease.Spec = leaseSpec(n.cfg.NodeName, now)
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease = lease.DeepCopy()
	lease.Spec = leaseSpec(n.cfg.NodeName, now)
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

func leaseSpec(holder string, now metav1.MicroTime) coordinationv1.LeaseSpec {
	return coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(holder),
		LeaseDurationSeconds: ptr.To(int32(leaseDuration.Seconds())),
		RenewTime:            &now,
	}
}
