package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The seed's manifests, the tutorial's files: the headless Service nginx
// and the StatefulSet web with a claim per pod, and a normal Service over
// the same pods.
var (
	seedManifest         = readExample("web.yaml")
	seedClusterIPService = readExample("vip.yaml")
)

func readExample(name string) string {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "examples", name))
	if err != nil {
		panic(err)
	}
	return string(data)
}

func TestSeedWalkthrough(t *testing.T) {
	c := newCluster(t)
	if err := c.importTestImages(); err != nil {
		t.Fatal(err)
	}
	seedWalkthrough(t, c, false)
}

// The walkthrough again, with stead killed -9 and started again between
// writing the pages and deleting the pods: everything still holds.
func TestSeedWalkthroughAcrossKill(t *testing.T) {
	c := newCluster(t)
	if err := c.importTestImages(); err != nil {
		t.Fatal(err)
	}
	seedWalkthrough(t, c, true)
}

func seedWalkthrough(t *testing.T, c *cluster, killBeforeDelete bool) {
	kubectl := func(args ...string) string { t.Helper(); return c.mustKubectl("", args...) }
	began := time.Now()
	step := func(what string) { t.Logf("%5.1fs %s", time.Since(began).Seconds(), what) }

	step("1: apply, watch the pods come in order")
	// Step 1: web-0 goes Running and Ready before web-1 is even created.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	lines, err := c.watchLines(watchCtx, "get", "pods", "-w", "-l", "app=nginx")
	if err != nil {
		t.Fatal(err)
	}
	c.mustKubectl(seedManifest, "apply", "-f", "-")
	watchOrder(t, lines, 2)
	stopWatch()

	step("2: hostnames")
	// Step 2: each pod's hostname is its name.
	for _, pod := range []string{"web-0", "web-1"} {
		if got := strings.TrimSpace(kubectl("exec", pod, "--", "sh", "-c", "hostname")); got != pod {
			t.Errorf("kubectl exec %s -- sh -c 'hostname' = %q", pod, got)
		}
	}

	step("3: nslookup from a throwaway pod")
	// Step 3: from a throwaway pod, each pod's DNS name answers its IP.
	ips := podIPs(t, c)
	term := c.kubectlAtTerminal(t, "run", "-i", "--tty", "--image", "busybox:1.28.4", "dns-test", "--restart=Never", "--rm", "/bin/sh")
	term.waitFor(t, "If you don't see a command prompt")
	for _, pod := range []string{"web-0", "web-1"} {
		term.send(t, "nslookup "+pod+".nginx\r")
		term.waitFor(t, "Name:      "+pod+".nginx\r\nAddress 1: "+ips[pod]+" "+pod+".nginx.default.svc.cluster.local\r\n")
	}
	term.send(t, "exit\r")
	if err := term.wait(t); err != nil {
		t.Fatalf("kubectl run -it dns-test: %v\n%s", err, term.out.String())
	}
	podGone(t, c, "dns-test")

	step("5: claims")
	// Step 5: one claim per pod, bound to a provisioned volume.
	claims := kubectl("get", "pvc", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.phase}/{.metadata.uid} {end}`)
	for _, claim := range []string{"www-web-0", "www-web-1"} {
		if !strings.Contains(claims, claim+"=Bound/") {
			t.Errorf("claim %s not Bound: %s", claim, claims)
		}
	}

	step("6: pages")
	// Step 6: a page per pod on its own volume, served under its own name.
	for _, i := range []string{"0", "1"} {
		kubectl("exec", "web-"+i, "--", "sh", "-c", "echo hello $(hostname) > /usr/share/nginx/html/index.html")
	}
	kubectl("run", "client", "--image", "busybox:1.28.4", "--restart=Never", "--", "sleep", "3600")
	eventually(t, 60*time.Second, "client pod Running", func() error {
		if phase := kubectl("get", "pod", "client", "-o", "jsonpath={.status.phase}"); phase != "Running" {
			return fmt.Errorf("client is %q", phase)
		}
		return nil
	})
	checkPages(t, c)

	step("4: a normal Service")
	// Step 4: a normal Service's name answers its virtual IP, and traffic
	// to it reaches a ready pod.
	c.mustKubectl(seedClusterIPService, "apply", "-f", "-")
	vip := kubectl("get", "svc", "nginx-vip", "-o", "jsonpath={.spec.clusterIP}")
	eventually(t, 30*time.Second, "nginx-vip resolves to its cluster IP and serves", func() error {
		out, err := c.kubectl("", "exec", "client", "--", "nslookup", "nginx-vip")
		if err != nil || !regexp.MustCompile(`Name:\s+nginx-vip\s+Address 1: `+regexp.QuoteMeta(vip)+`\b`).MatchString(out) {
			return fmt.Errorf("nslookup nginx-vip (want %s): %v\n%s", vip, err, out)
		}
		out, err = c.kubectl("", "exec", "client", "--", "wget", "-qO-", "nginx-vip")
		if got := strings.TrimSpace(out); err != nil || (got != "hello web-0" && got != "hello web-1") {
			return fmt.Errorf("wget nginx-vip: %v %q", err, got)
		}
		return nil
	})

	if killBeforeDelete {
		step("kill -9 and restart")
		c.kill()
		c.start()
		checkPages(t, c)
	}

	step("7: delete the pods")
	// Step 7: delete both pods; they come back in order with the same
	// names, claims and content.
	watchCtx2, stopWatch2 := context.WithCancel(context.Background())
	defer stopWatch2()
	lines, err = c.watchLines(watchCtx2, "get", "pods", "-w", "-l", "app=nginx", "--watch-only")
	if err != nil {
		t.Fatal(err)
	}
	kubectl("delete", "pod", "-l", "app=nginx")
	watchOrder(t, lines, 2)
	stopWatch2()
	if again := kubectl("get", "pvc", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.phase}/{.metadata.uid} {end}`); again != claims {
		t.Errorf("claims changed across the pods' replacement:\nbefore %s\nafter  %s", claims, again)
	}
	checkPages(t, c)
	step("done")
}

// watchOrder reads `kubectl get pods -w` lines until web-0 … web-(n-1) have
// each been seen Running 1/1, and fails if a pod appears before the one
// below it is Running and Ready. Lines of pods on their way out (being
// deleted) do not count.
func watchOrder(t *testing.T, lines <-chan string, n int) {
	t.Helper()
	ready := 0 // web-0 … web-(ready-1) have been seen Running and Ready
	timeout := time.After(3 * time.Minute)
	var seen []string
	for ready < n {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("kubectl get -w ended; saw:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, line)
			f := strings.Fields(line)
			if len(f) < 3 || !strings.HasPrefix(f[0], "web-") {
				continue
			}
			if f[2] == "Terminating" || f[2] == "Completed" || f[2] == "Error" {
				continue // the pods being replaced, on their way out
			}
			var ordinal int
			if _, err := fmt.Sscanf(f[0], "web-%d", &ordinal); err != nil {
				continue
			}
			if ordinal > ready {
				t.Fatalf("web-%d appeared before web-%d was Running and Ready:\n%s", ordinal, ready, strings.Join(seen, "\n"))
			}
			if ordinal == ready && f[1] == "1/1" && f[2] == "Running" {
				ready++
			}
		case <-timeout:
			t.Fatalf("pods not Running and Ready in order within 3m; saw:\n%s", strings.Join(seen, "\n"))
		}
	}
}

func podIPs(t *testing.T, c *cluster) map[string]string {
	t.Helper()
	ips := map[string]string{}
	for _, pod := range []string{"web-0", "web-1"} {
		ips[pod] = c.mustKubectl("", "get", "pod", pod, "-o", "jsonpath={.status.podIP}")
		if ips[pod] == "" {
			t.Fatalf("%s has no IP", pod)
		}
	}
	return ips
}

// checkPages fetches each pod's page by its DNS name from the client pod.
func checkPages(t *testing.T, c *cluster) {
	t.Helper()
	for _, pod := range []string{"web-0", "web-1"} {
		eventually(t, 30*time.Second, "wget "+pod+".nginx", func() error {
			out, err := c.kubectl("", "exec", "client", "--", "wget", "-qO-", pod+".nginx")
			if got := strings.TrimSpace(out); err != nil || got != "hello "+pod {
				return fmt.Errorf("wget -qO- %s.nginx: %v %q", pod, err, got)
			}
			return nil
		})
	}
}
