package join

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certificateslisters "k8s.io/client-go/listers/certificates/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// errNodeUnknown: the node has not registered yet; the CSR waits for it.
var errNodeUnknown = errors.New("node not registered yet")

// servingVerdict decides a kubernetes.io/kubelet-serving CSR: a node may
// have a serving certificate for its own name and the addresses its Node
// reports, nothing more, so that no node can pose as another or as any
// other server. Upstream leaves these CSRs to the administrator; a node
// that cannot serve its kubelet API has no exec, logs or port-forward.
// It returns nil to approve, errNodeUnknown to wait, another error to deny.
func servingVerdict(req *certificatesv1.CertificateSigningRequest, node func(name string) (*corev1.Node, error)) error {
	nodeName, ok := strings.CutPrefix(req.Spec.Username, "system:node:")
	if !ok || !slices.Contains(req.Spec.Groups, "system:nodes") {
		return fmt.Errorf("requested by %q, not by a node", req.Spec.Username)
	}
	for _, u := range req.Spec.Usages {
		switch u {
		case certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth:
		default:
			return fmt.Errorf("spec.usages: %q is not for a serving certificate", u)
		}
	}
	if !slices.Contains(req.Spec.Usages, certificatesv1.UsageServerAuth) {
		return errors.New("spec.usages: no server auth")
	}
	block, _ := pem.Decode(req.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return errors.New("spec.request: no PEM CERTIFICATE REQUEST")
	}
	cr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return fmt.Errorf("spec.request: %w", err)
	}
	if cr.Subject.CommonName != req.Spec.Username || !slices.Equal(cr.Subject.Organization, []string{"system:nodes"}) {
		return fmt.Errorf("subject %q is not the requester's (CN=%s, O=system:nodes)", cr.Subject.String(), req.Spec.Username)
	}
	if len(cr.EmailAddresses) > 0 || len(cr.URIs) > 0 {
		return errors.New("e-mail and URI names are not for a node")
	}
	if len(cr.DNSNames)+len(cr.IPAddresses) == 0 {
		return errors.New("no DNS name or IP address")
	}
	n, err := node(nodeName)
	if err != nil {
		return err
	}
	names, addresses := []string{nodeName}, []string{}
	for _, a := range n.Status.Addresses {
		switch a.Type {
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			names = append(names, a.Address)
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			addresses = append(addresses, a.Address)
		}
	}
	for _, dns := range cr.DNSNames {
		if !slices.Contains(names, dns) {
			return fmt.Errorf("DNS name %q is not node %s's", dns, nodeName)
		}
	}
	for _, ip := range cr.IPAddresses {
		if !slices.Contains(addresses, ip.String()) {
			return fmt.Errorf("IP address %s is not node %s's", ip, nodeName)
		}
	}
	return nil
}

// ServingApprover approves (or denies, saying why) nodes' requests for
// kubelet API serving certificates; the controller manager's signer then
// signs the approved ones.
type ServingApprover struct {
	client kubernetes.Interface
	csrs   certificateslisters.CertificateSigningRequestLister
	nodes  corelisters.NodeLister
	synced []cache.InformerSynced
	queue  workqueue.TypedRateLimitingInterface[string]
}

// NewServingApprover is fed by factory's CSR and Node informers; start the
// factory after it.
func NewServingApprover(client kubernetes.Interface, factory informers.SharedInformerFactory) *ServingApprover {
	csrInformer := factory.Certificates().V1().CertificateSigningRequests()
	nodeInformer := factory.Core().V1().Nodes()
	a := &ServingApprover{
		client: client,
		csrs:   csrInformer.Lister(),
		nodes:  nodeInformer.Lister(),
		synced: []cache.InformerSynced{csrInformer.Informer().HasSynced, nodeInformer.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubelet-serving-approver"}),
	}
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			a.queue.Add(key)
		}
	}
	_, _ = csrInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	return a
}

// Run approves until ctx ends.
func (a *ServingApprover) Run(ctx context.Context) {
	defer utilruntime.HandleCrash()
	defer a.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), a.synced...) {
		return
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for a.next(ctx) {
		}
	}, time.Second)
	<-ctx.Done()
}

func (a *ServingApprover) next(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	if err := a.sync(ctx, key); err != nil {
		klog.V(2).InfoS("kubelet serving CSR", "csr", key, "err", err)
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	return true
}

func (a *ServingApprover) sync(ctx context.Context, name string) error {
	req, err := a.csrs.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if req.Spec.SignerName != certificatesv1.KubeletServingSignerName || decided(req) {
		return nil
	}
	verdict := servingVerdict(req, func(name string) (*corev1.Node, error) {
		n, err := a.nodes.Get(name)
		if apierrors.IsNotFound(err) {
			return nil, errNodeUnknown
		}
		return n, err
	})
	if errors.Is(verdict, errNodeUnknown) {
		return verdict // retried: the node registers before it asks, but the cache may lag
	}
	cond := certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
		Reason: "SteadNodeServingCertificate", Message: "the node's own names and addresses",
		LastUpdateTime: metav1.Now(),
	}
	if verdict != nil {
		cond.Type, cond.Reason, cond.Message = certificatesv1.CertificateDenied, "NotTheNodesOwn", verdict.Error()
		klog.InfoS("denied a kubelet serving certificate", "csr", name, "requester", req.Spec.Username, "reason", verdict)
	}
	req = req.DeepCopy()
	req.Status.Conditions = append(req.Status.Conditions, cond)
	_, err = a.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, name, req, metav1.UpdateOptions{})
	return err
}

func decided(req *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range req.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied {
			return true
		}
	}
	return false
}
