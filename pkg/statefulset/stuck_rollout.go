package statefulset

import (
	"context"
	"fmt"
	"time"

	apps "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// Recovery from a broken rollout (kubernetes/kubernetes#67250, #60164).
//
// Upstream, a RollingUpdate under the OrderedReady policy waits for every
// pod to be Running and Ready before it deletes the next one. If the
// template is changed to one whose pods never become Ready (bad image,
// crash loop, failing readiness probe, unschedulable requests), the first
// replaced pod never becomes Ready, and the wait never ends: fixing the
// template, or reverting it, creates a new update revision, but the
// controller keeps waiting for the broken pod instead of replacing it, and
// the user has to delete the pod by hand. Here the controller deletes it
// itself, and recreates it at the update revision on a later sync.
//
// The rule. findBrokenRolloutPod picks at most one pod, the one at index i
// of replicas (ordinal getStartOrdinal(set)+i), when all of these hold:
//
//  1. set is not being deleted and spec.updateStrategy.type is
//     RollingUpdate. OnDelete and Recreate are never touched.
//  2. i >= partition (spec.updateStrategy.rollingUpdate.partition, 0 when
//     unset): pods the partition holds back are never touched.
//  3. The pod exists, is created (has a phase), is not terminating, and is
//     not Failed or Succeeded (upstream's own path replaces those).
//  4. Its controller-revision-hash label is not updateRevision: a pod
//     already at updateRevision is left alone however unhealthy it is,
//     exactly as upstream does; replacing it would only recreate the same
//     thing.
//  5. It is not Running and Ready.
//  6. It is the highest-ordinal created pod that is unavailable: every
//     created pod at a higher index is available (Ready for
//     minReadySeconds, upstream's isUnavailable) and not terminating. Pods
//     at higher indexes that do not exist yet do not block (see 7 for the
//     exception). So at most one pod qualifies per sync, and the controller
//     never replaces a pod while a higher one it already (re)created is
//     still coming up.
//  7. If its revision is the set's currentRevision (the revision a rollout
//     is moving away from, as opposed to a revision a rollout abandoned,
//     see below), every created pod at a higher index must be at
//     updateRevision and available: a current-revision pod is never
//     deleted while a higher ordinal has not finished its update (is at an
//     old revision, or at the new one and not yet Ready). Higher ordinals
//     that do not exist do not hold it back: under OrderedReady they are
//     only created once this pod is Ready, so waiting for them would wait
//     for this pod, forever if it is broken at its revision. That is the
//     case of a set whose first template was broken (kubernetes#60164):
//     pod 0 at currentRevision, never Ready, pods 1.. never created. The
//     price, in a rolling update whose next pod was deleted and not yet
//     recreated while a lower current-revision pod is unready, is that the
//     lower pod is replaced before the higher one comes back rather than
//     after: it was unavailable already, and it ends at updateRevision
//     either way.
//
// A pod whose revision is neither updateRevision nor currentRevision was
// made by a rollout that was abandoned: the template changed again (a fix)
// or went back (a rollback, in which case updateRevision ==
// currentRevision) before the rollout completed. Such a pod is a leftover
// of the broken template; 7 does not apply to it, so it is replaced even
// when pods above it are still at an old revision (Ready ones; rule 6
// still applies). This is the case of #67250: OrderedReady, template
// broken, pod N-1 stuck at the broken revision, template fixed or
// reverted: pod N-1 is deleted, recreated at updateRevision, and once it
// is Ready the rolling update continues downward as usual.
//
// Why this is safe: the pod replaced is unavailable already (5), so the
// deletion takes nothing down that was up, and maxUnavailable accounting
// is unchanged. It is never the pod of a current rollout that is merely
// slow (4), never below the partition (2), and never ahead of a higher
// ordinal that is still coming up (6, 7). The replacement is created by
// upstream's code, at updateRevision, and under OrderedReady only once all
// lower ordinals are Running and Ready, so OrderedReady's creation order
// holds. Deletion is the ordinary graceful DeleteStatefulPod: a pod on an
// unreachable node stays Terminating until it is really gone, so there are
// never two pods with one identity.
//
// The rule is the same under OrderedReady and Parallel. Under Parallel,
// upstream's rolling update already replaces an unavailable pod of an old
// revision (with MaxUnavailableStatefulSet, on by default since 1.37, all
// of them at once), so there the rule mostly gets there one sync earlier.

// RecreatingBrokenPodReason is the reason of the event emitted on the set
// when a pod is deleted by the broken-rollout recovery.
const RecreatingBrokenPodReason = "RecreatingBrokenPod"

// findBrokenRolloutPod returns the index in replicas of the pod to delete
// under the rule above, or -1, and a sentence explaining why for the event.
// replicas is as built by updateStatefulSet: index i holds ordinal
// getStartOrdinal(set)+i, and a pod that does not exist yet is a
// placeholder without a phase (or nil). now is only used for
// minReadySeconds, as upstream's own availability checks use it. It is a
// pure function of its arguments.
func findBrokenRolloutPod(set *apps.StatefulSet, currentRevision, updateRevision *apps.ControllerRevision, replicas []*v1.Pod, now time.Time) (int, string) {
	// 1
	if set.DeletionTimestamp != nil || set.Spec.UpdateStrategy.Type != apps.RollingUpdateStatefulSetStrategyType ||
		currentRevision == nil || updateRevision == nil {
		return -1, ""
	}
	// 2
	partition := 0
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil && *ru.Partition > 0 {
		partition = int(*ru.Partition)
	}

	// Walk down from the highest index to the first created pod that is
	// unavailable (6), recording what the pods above it look like (7).
	higherStale := false // some higher pod is available but not at updateRevision
	for i := len(replicas) - 1; i >= partition; i-- {
		pod := replicas[i]
		if pod == nil || !isCreated(pod) {
			continue // not yet created: holds nothing back (7)
		}
		revision := getPodRevision(pod)
		if !isUnavailable(pod, set.Spec.MinReadySeconds, now) {
			if revision != updateRevision.Name {
				higherStale = true
			}
			continue
		}
		// pod is the highest unavailable pod in the update range: the only
		// candidate. Whatever it is, nothing below it qualifies (6).
		switch {
		case isTerminating(pod) || isTerminalPhase(pod): // 3
			return -1, ""
		case revision == updateRevision.Name: // 4
			return -1, ""
		case isRunningAndReady(pod): // 5 (Ready, not yet minReadySeconds)
			return -1, ""
		}
		if revision == currentRevision.Name { // 7
			if higherStale {
				return -1, ""
			}
			return i, fmt.Sprintf("pod %s is at revision %s, not Ready, and no higher pod is still to be updated to %s; not waiting for it to become Ready",
				pod.Name, revision, updateRevision.Name)
		}
		return i, fmt.Sprintf("pod %s is not Ready and is at revision %s, which the StatefulSet no longer rolls out to (update revision %s, current revision %s)",
			pod.Name, revisionOrNone(revision), updateRevision.Name, currentRevision.Name)
	}
	return -1, ""
}

func revisionOrNone(revision string) string {
	if revision == "" {
		return "<none>"
	}
	return revision
}

// recreateBrokenRolloutPod deletes the pod findBrokenRolloutPod picks, if
// any, and emits a RecreatingBrokenPod event on set. The deleted pod is
// replaced in replicas by a copy marked terminating, so the rest of this
// sync sees it as upstream would see any pod being deleted: under
// OrderedReady the sync waits for it, and on a later sync the controller
// recreates it at updateRevision.
func (ssc *defaultStatefulSetControl) recreateBrokenRolloutPod(ctx context.Context, set *apps.StatefulSet, currentRevision, updateRevision *apps.ControllerRevision, replicas []*v1.Pod, now time.Time) error {
	i, why := findBrokenRolloutPod(set, currentRevision, updateRevision, replicas, now)
	if i < 0 {
		return nil
	}
	pod := replicas[i]
	klog.FromContext(ctx).V(2).Info("Deleting Pod of StatefulSet stuck in a broken rollout",
		"statefulSet", klog.KObj(set), "pod", klog.KObj(pod), "podRevision", getPodRevision(pod),
		"currentRevision", currentRevision.Name, "updateRevision", updateRevision.Name)
	if err := ssc.podControl.DeleteStatefulPod(set, pod); err != nil {
		return err
	}
	ssc.podControl.recorder.Event(set, v1.EventTypeNormal, RecreatingBrokenPodReason,
		fmt.Sprintf("Deleting pod %s to recreate it at revision %s: %s", pod.Name, updateRevision.Name, why))
	deleted := pod.DeepCopy()
	ts := metav1.NewTime(now)
	deleted.DeletionTimestamp = &ts
	replicas[i] = deleted
	return nil
}
