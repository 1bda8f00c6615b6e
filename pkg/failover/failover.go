// Package failover moves the pods of a lost node elsewhere, fast and
// without ever running two pods of one identity. Upstream leaves the pods
// of an unreachable node Terminating until its kubelet confirms them gone
// or a person marks the node out of service, because a kubelet cut off
// from the API server keeps its containers running. A stead agent fences
// itself instead (pkg/agent/fence.go): past its fencing time without a
// Lease renewal, its containers are killed, whether the agent lost the
// server or died. So once a node that says it fences itself has let its
// Lease lapse for longer than that, with a margin, its pods are known
// stopped: this controller marks the node out of service (the taint of
// KEP-2268, which keeps new pods off it) and deletes its pods, and their
// controllers recreate them where they can run.
package failover

import (
	"context"
	"fmt"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	nodeutil "k8s.io/kubernetes/pkg/util/node"
	"k8s.io/utils/ptr"

	"github.com/steadhq/stead/pkg/agent"
)

// Margin is how long past the later of its Lease's expiry and its fencing
// time a node is given before its pods are taken as stopped: room for the
// kill itself and for the clocks of server and node to differ.
const Margin = 10 * time.Second

// taintValue tells stead's out-of-service taint from one a person set,
// which this controller never removes.
const taintValue = "stead-self-fenced"

var outOfService = corev1.Taint{Key: corev1.TaintNodeOutOfService, Value: taintValue, Effect: corev1.TaintEffectNoExecute}

type action int

const (
	none    action = iota
	fence          // taint the node and delete its pods
	unfence        // the node is back: remove stead's taint
)

// decide is the controller's whole judgement of one node, from what it
// says of itself and its Lease; it also returns when the node was (or
// will be) fenced.
func decide(node *corev1.Node, lease *coordinationv1.Lease, now time.Time) (action, time.Time) {
	fenceAfter, err := strconv.Atoi(node.Annotations[agent.FencingAnnotation])
	if err != nil || fenceAfter <= 0 || lease == nil || lease.Spec.RenewTime == nil {
		return none, time.Time{} // not a node that fences itself, or never renewed
	}
	renewed := lease.Spec.RenewTime.Time
	expiry := renewed.Add(time.Duration(ptr.Deref(lease.Spec.LeaseDurationSeconds, 40)) * time.Second)
	deadline := renewed.Add(time.Duration(fenceAfter) * time.Second)
	if expiry.After(deadline) {
		deadline = expiry
	}
	deadline = deadline.Add(Margin)
	tainted := hasTaint(node)
	switch {
	case now.After(deadline) && !nodeutil.IsNodeReady(node):
		return fence, deadline
	case tainted && now.Before(expiry) && nodeutil.IsNodeReady(node):
		return unfence, deadline
	}
	return none, deadline
}

func hasTaint(node *corev1.Node) bool {
	for _, t := range node.Spec.Taints {
		if t.MatchTaint(&outOfService) && t.Value == taintValue {
			return true
		}
	}
	return false
}

// Controller applies decide to every node, once a second, from its
// informers' caches.
type Controller struct {
	client   kubernetes.Interface
	nodes    corelisters.NodeLister
	leases   coordinationlisters.LeaseLister
	pods     corelisters.PodLister
	synced   []cache.InformerSynced
	recorder record.EventRecorder
	now      func() time.Time
}

// New is fed by factory's Node, Lease and Pod informers; start the
// factory after it.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory) *Controller {
	nodes, leases, pods := factory.Core().V1().Nodes(), factory.Coordination().V1().Leases(), factory.Core().V1().Pods()
	return &Controller{
		client: client, nodes: nodes.Lister(), leases: leases.Lister(), pods: pods.Lister(),
		synced: []cache.InformerSynced{nodes.Informer().HasSynced, leases.Informer().HasSynced, pods.Informer().HasSynced},
		now:    time.Now,
	}
}

// Run fails nodes over until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "stead-failover"})
	wait.UntilWithContext(ctx, c.syncAll, time.Second)
}

func (c *Controller) syncAll(ctx context.Context) {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return
	}
	for _, node := range nodes {
		if err := c.sync(ctx, node); err != nil {
			klog.ErrorS(err, "failover", "node", node.Name)
		}
	}
}

func (c *Controller) sync(ctx context.Context, node *corev1.Node) error {
	lease, err := c.leases.Leases(corev1.NamespaceNodeLease).Get(node.Name)
	if apierrors.IsNotFound(err) {
		lease = nil
	} else if err != nil {
		return err
	}
	act, deadline := decide(node, lease, c.now())
	switch act {
	case fence:
		if !hasTaint(node) {
			if err := c.setTaint(ctx, node, true); err != nil {
				return err
			}
			c.recorder.Eventf(node, corev1.EventTypeWarning, "SelfFenced",
				"Lease not renewed since %s: the node has killed its pods (fenced at %s); they are deleted so that they are recreated elsewhere",
				lease.Spec.RenewTime.Format(time.RFC3339), deadline.Add(-Margin).Format(time.RFC3339))
		}
		return c.deletePods(ctx, node)
	case unfence:
		if err := c.setTaint(ctx, node, false); err != nil {
			return err
		}
		c.recorder.Event(node, corev1.EventTypeNormal, "SelfFencingOver", "Lease renewed and node Ready: out-of-service taint removed")
	}
	return nil
}

// deletePods removes the fenced node's pods at once: their processes are
// known stopped, so there is nothing to wait for.
func (c *Controller) deletePods(ctx context.Context, node *corev1.Node) error {
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	for _, pod := range pods {
		if pod.Spec.NodeName != node.Name {
			continue
		}
		err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		switch {
		case err == nil:
			klog.InfoS("deleted a pod of a fenced node", "pod", klog.KObj(pod), "node", node.Name)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		default:
			return fmt.Errorf("delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	return nil
}

// setTaint adds or removes stead's out-of-service taint with updates that
// fail if the node changed meanwhile (its resourceVersion), retried on the
// node read afresh, so that no other taint is lost: the node lifecycle
// controller changes its own taints at the very moment a node is lost.
func (c *Controller) setTaint(ctx context.Context, node *corev1.Node, on bool) error {
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		var taints []corev1.Taint
		for _, t := range node.Spec.Taints {
			if !(t.MatchTaint(&outOfService) && t.Value == taintValue) {
				taints = append(taints, t)
			}
		}
		if on {
			taints = append(taints, corev1.Taint{Key: outOfService.Key, Value: outOfService.Value, Effect: outOfService.Effect, TimeAdded: ptr.To(metav1.Now())})
		}
		updated := node.DeepCopy()
		updated.Spec.Taints = taints
		_, err := c.client.CoreV1().Nodes().Update(ctx, updated, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if fresh, getErr := c.client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{}); getErr == nil {
				node = fresh
			}
		}
		return err
	})
}
