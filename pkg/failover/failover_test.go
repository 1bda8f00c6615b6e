package failover

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/steadhq/stead/pkg/agent"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	node := func(fencing string, ready corev1.ConditionStatus, tainted bool) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
		if fencing != "" {
			n.Annotations = map[string]string{agent.FencingAnnotation: fencing}
		}
		if ready != "" {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
		}
		if tainted {
			n.Spec.Taints = []corev1.Taint{outOfService}
		}
		return n
	}
	lease := func(renewed time.Time, seconds int32) *coordinationv1.Lease {
		return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renewed}, LeaseDurationSeconds: ptr.To(seconds)}}
	}
	personTainted := node("35", corev1.ConditionTrue, false)
	personTainted.Spec.Taints = []corev1.Taint{{Key: corev1.TaintNodeOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute}}
	for _, tc := range []struct {
		name  string
		node  *corev1.Node
		lease *coordinationv1.Lease
		now   time.Time
		want  action
	}{
		{"lease fresh", node("35", corev1.ConditionTrue, false), lease(t0, 40), t0.Add(10 * time.Second), none},
		{"lease expired, within the margin", node("35", corev1.ConditionUnknown, false), lease(t0, 40), t0.Add(45 * time.Second), none},
		{"lease expired past the margin", node("35", corev1.ConditionUnknown, false), lease(t0, 40), t0.Add(51 * time.Second), fence},
		{"fencing time longer than the lease", node("90", corev1.ConditionUnknown, false), lease(t0, 40), t0.Add(60 * time.Second), none},
		{"past a long fencing time", node("90", corev1.ConditionUnknown, false), lease(t0, 40), t0.Add(101 * time.Second), fence},
		{"already fenced: pods still deleted", node("35", corev1.ConditionUnknown, true), lease(t0, 40), t0.Add(5 * time.Minute), fence},
		{"expired but still Ready (the lifecycle controller lags)", node("35", corev1.ConditionTrue, false), lease(t0, 40), t0.Add(time.Minute), none},
		{"a node that does not fence itself", node("", corev1.ConditionUnknown, false), lease(t0, 40), t0.Add(time.Hour), none},
		{"a garbled fencing annotation", node("soon", corev1.ConditionUnknown, false), lease(t0, 40), t0.Add(time.Hour), none},
		{"never renewed", node("35", corev1.ConditionUnknown, false), nil, t0.Add(time.Hour), none},
		{"back: Ready with a fresh lease", node("35", corev1.ConditionTrue, true), lease(t0, 40), t0.Add(time.Second), unfence},
		{"lease fresh but not Ready yet", node("35", corev1.ConditionUnknown, true), lease(t0, 40), t0.Add(time.Second), none},
		{"a person's out-of-service taint is not ours", personTainted, lease(t0, 40), t0.Add(time.Second), none},
	} {
		if got, _ := decide(tc.node, tc.lease, tc.now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
