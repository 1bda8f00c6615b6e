package statefulset

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"k8s.io/kubernetes/pkg/controller/util/consistency"
)

func TestGrowClaims(t *testing.T) {
	storage := func(claim *v1.PersistentVolumeClaim) string {
		q := claim.Spec.Resources.Requests[v1.ResourceStorage]
		return q.String()
	}
	for _, tc := range []struct {
		name     string
		template string
		claim    string
		phase    v1.PersistentVolumeClaimPhase
		deleting bool
		refuse   bool
		want     string // the claim's request after; "" for no update
		event    string
	}{
		{"a bigger template grows the claim", "2Gi", "1Gi", v1.ClaimBound, false, false, "2Gi", "Normal GrowingClaim Claim datadir-foo-0 of Pod foo-0 in StatefulSet foo grows to 2Gi"},
		{"an equal template does nothing", "1Gi", "1Gi", v1.ClaimBound, false, false, "", ""},
		{"a smaller template never shrinks", "512Mi", "1Gi", v1.ClaimBound, false, false, "", ""},
		{"an unbound claim is left for the binder", "2Gi", "1Gi", v1.ClaimPending, false, false, "", ""},
		{"a claim being deleted is left alone", "2Gi", "1Gi", v1.ClaimBound, true, false, "", ""},
		{"a class without expansion: a warning", "2Gi", "1Gi", v1.ClaimBound, false, true, "2Gi", "Warning ClaimGrowthFailed Grow Claim datadir-foo-0 of Pod foo-0 in StatefulSet foo to 2Gi, as its template asks, failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := newStatefulSet(1)
			set.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[v1.ResourceStorage] = resource.MustParse(tc.template)
			pod := newStatefulSetPod(set, 0)
			claims := getPersistentVolumeClaims(set, pod)
			claim := claims["datadir"]
			claim.Spec.Resources.Requests = v1.ResourceList{v1.ResourceStorage: resource.MustParse(tc.claim)}
			claim.Status.Phase = tc.phase
			if tc.deleting {
				claim.DeletionTimestamp = &metav1.Time{}
			}
			indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
			if err := indexer.Add(&claim); err != nil {
				t.Fatal(err)
			}
			client := &fake.Clientset{}
			var updated *v1.PersistentVolumeClaim
			client.AddReactor("update", "persistentvolumeclaims", func(action core.Action) (bool, runtime.Object, error) {
				updated = action.(core.UpdateAction).GetObject().(*v1.PersistentVolumeClaim)
				if tc.refuse {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "persistentvolumeclaims"}, claim.Name, nil)
				}
				return true, updated, nil
			})
			recorder := record.NewFakeRecorder(10)
			control := NewStatefulPodControl(client, nil, corelisters.NewPersistentVolumeClaimLister(indexer), recorder, consistency.NewNoopConsistencyStore())
			control.GrowClaims(set, pod)

			switch {
			case tc.want == "" && updated != nil:
				t.Errorf("claim updated to %s, want it left alone", storage(updated))
			case tc.want != "" && (updated == nil || storage(updated) != tc.want):
				t.Errorf("claim updated to %v, want %s", updated, tc.want)
			}
			events := collectEvents(recorder.Events)
			switch {
			case tc.event == "" && len(events) != 0:
				t.Errorf("events %v, want none", events)
			case tc.event != "" && (len(events) != 1 || !strings.HasPrefix(events[0], tc.event)):
				t.Errorf("events %v, want one starting %q", events, tc.event)
			}
		})
	}
}
