package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Two pods behind a headless Service and a ClusterIP one, readiness by a
// file each can drop or restore.
const readinessSet = `apiVersion: v1
kind: Service
metadata: {name: rd}
spec:
  clusterIP: None
  selector: {app: rd}
  ports: [{name: web, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: rdvip}
spec:
  type: NodePort
  selector: {app: rd}
  ports: [{name: web, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: rd}
spec:
  serviceName: rd
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: rd}}
  template:
    metadata:
      labels: {app: rd}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:1.28.4
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && touch /www/ready && exec httpd -f -p 80 -h /www"]
        readinessProbe:
          exec: {command: [test, -f, /www/ready]}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox:1.28.4, command: [sleep, "3600"]}
`

// TestReadinessDecidesDNSAndServiceTraffic: from a pod, a not-ready pod
// drops out of its headless Service's answer and of its ClusterIP
// Service's traffic (and NodePort's, from the node), and comes back in the
// answer with publishNotReadyAddresses.
func TestReadinessDecidesDNSAndServiceTraffic(t *testing.T) {
	c := sharedCluster(t)
	const ns = "readiness"
	c.mustKubectl("", "create", "namespace", ns)
	kubectl := func(args ...string) (string, error) { return c.kubectl("", append([]string{"-n", ns}, args...)...) }
	c.mustKubectl(readinessSet, "-n", ns, "apply", "-f", "-")
	ips := map[string]string{}
	eventually(t, 90*time.Second, "rd-0, rd-1 and client Ready", func() error {
		for _, pod := range []string{"rd-0", "rd-1", "client"} {
			out, err := kubectl("get", "pod", pod, "-o", `jsonpath={.status.podIP} {.status.conditions[?(@.type=="Ready")].status}`)
			if f := strings.Fields(out); err != nil || len(f) != 2 || f[1] != "True" {
				return fmt.Errorf("%s: %q %v", pod, out, err)
			}
			ips[pod] = strings.Fields(out)[0]
		}
		return nil
	})

	// The addresses nslookup prints for name, from the client pod.
	addressLine := regexp.MustCompile(`Address \d+: (\S+)`)
	lookup := func(name string) ([]string, error) {
		out, err := kubectl("exec", "client", "--", "nslookup", name)
		if err != nil {
			return nil, fmt.Errorf("nslookup %s: %v\n%s", name, err, out)
		}
		_, answer, _ := strings.Cut(out, "Name:")
		var got []string
		for _, m := range addressLine.FindAllStringSubmatch(answer, -1) {
			got = append(got, m[1])
		}
		slices.Sort(got)
		return got, nil
	}
	expectAnswer := func(what, name string, pods ...string) {
		t.Helper()
		var want []string
		for _, pod := range pods {
			want = append(want, ips[pod])
		}
		slices.Sort(want)
		eventually(t, 30*time.Second, what, func() error {
			got, err := lookup(name)
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("nslookup %s: %v, want %v", name, got, want)
			}
			return nil
		})
	}
	// Which pods answer 12 requests to the ClusterIP Service, and 12 to
	// its NodePort on the node's own bridge address, from the node.
	nodePort, _ := kubectl("get", "service", "rdvip", "-o", "jsonpath={.spec.ports[0].nodePort}")
	podCIDR, _ := kubectl("get", "node", "-o", "jsonpath={.items[0].spec.podCIDR}")
	cidr, err := netip.ParsePrefix(podCIDR)
	if err != nil || nodePort == "" {
		t.Fatalf("podCIDR %q (%v), nodePort %q", podCIDR, err, nodePort)
	}
	nodeAddr := net.JoinHostPort(cidr.Addr().Next().String(), nodePort)
	httpClient := &http.Client{Timeout: 5 * time.Second}
	servedBy := func() (map[string]int, error) {
		seen := map[string]int{}
		for range 12 {
			out, err := kubectl("exec", "client", "--", "wget", "-qO-", "http://rdvip")
			if err != nil {
				return nil, fmt.Errorf("wget rdvip: %v %q", err, out)
			}
			seen[strings.TrimSpace(out)]++
			resp, err := httpClient.Get("http://" + nodeAddr)
			if err != nil {
				return nil, fmt.Errorf("NodePort %s: %v", nodeAddr, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return nil, err
			}
			seen[strings.TrimSpace(string(body))]++
		}
		return seen, nil
	}

	expectAnswer("both pods in the headless answer", "rd", "rd-0", "rd-1")
	eventually(t, 30*time.Second, "both pods serve the ClusterIP", func() error {
		seen, err := servedBy()
		if err != nil || seen["rd-0"] == 0 || seen["rd-1"] == 0 {
			return fmt.Errorf("served by %v (%v), want both", seen, err)
		}
		return nil
	})

	if _, err := kubectl("exec", "rd-1", "--", "rm", "/www/ready"); err != nil {
		t.Fatal(err)
	}
	expectAnswer("rd-1 out of the headless answer once not ready", "rd", "rd-0")
	eventually(t, 30*time.Second, "only rd-0 serves the ClusterIP", func() error {
		seen, err := servedBy()
		if err != nil || len(seen) != 1 || seen["rd-0"] != 24 {
			return fmt.Errorf("served by %v (%v), want rd-0 alone", seen, err)
		}
		return nil
	})

	if _, err := kubectl("patch", "service", "rd", "-p", `{"spec":{"publishNotReadyAddresses":true}}`); err != nil {
		t.Fatal(err)
	}
	expectAnswer("rd-1 back in the answer with publishNotReadyAddresses", "rd", "rd-0", "rd-1")
	expectAnswer("rd-1's own name with publishNotReadyAddresses", "rd-1.rd", "rd-1")
	if seen, err := servedBy(); err != nil || len(seen) != 1 || seen["rd-0"] != 24 {
		t.Errorf("the ClusterIP Service, which does not publish unready pods: served by %v (%v), want rd-0 alone", seen, err)
	}

	if _, err := kubectl("exec", "rd-1", "--", "touch", "/www/ready"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "rd-1 serves again once ready", func() error {
		seen, err := servedBy()
		if err != nil || seen["rd-1"] == 0 {
			return fmt.Errorf("served by %v (%v), want rd-1 among them", seen, err)
		}
		return nil
	})
}
