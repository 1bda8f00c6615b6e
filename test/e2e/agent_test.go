package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// testLAN is a network of this test's own: a bridge on the host with the
// server's address, and one network namespace per node machine, each
// with a veth into the bridge. Nothing leaves it.
type testLAN struct {
	t      *testing.T
	id     string // unique to this LAN on this machine
	bridge string
	prefix string // the /24's first three octets
	netns  []string
}

var lanCount atomic.Int32

func newTestLAN(t *testing.T, nodes int) *testLAN {
	n := int(lanCount.Add(1))
	id := fmt.Sprintf("%d-%d", os.Getpid()%10000, n)
	lan := &testLAN{t: t, id: id, bridge: "sjb" + id, prefix: fmt.Sprintf("10.99.%d", (os.Getpid()+n)%250)}
	t.Cleanup(lan.remove)
	lan.run("ip", "link", "add", lan.bridge, "type", "bridge")
	lan.run("ip", "addr", "add", lan.serverIP()+"/24", "dev", lan.bridge)
	lan.run("ip", "link", "set", lan.bridge, "up")
	for i := range nodes {
		ns := fmt.Sprintf("stead-e2e-%s-%d", id, i)
		host, peer := lan.hostVeth(i), fmt.Sprintf("sjn%s-%d", id, i)
		lan.run("ip", "netns", "add", ns)
		lan.netns = append(lan.netns, ns)
		lan.run("ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns)
		lan.run("ip", "link", "set", host, "master", lan.bridge, "up")
		lan.run("ip", "-n", ns, "addr", "add", lan.nodeIP(i)+"/24", "dev", peer)
		lan.run("ip", "-n", ns, "link", "set", peer, "up")
		lan.run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	return lan
}

// hostVeth is the bridge's end of node machine i's link: down, the machine
// is cut off.
func (l *testLAN) hostVeth(i int) string { return fmt.Sprintf("sjh%s-%d", l.id, i) }
func (l *testLAN) serverIP() string      { return l.prefix + ".1" }
func (l *testLAN) nodeIP(i int) string   { return fmt.Sprintf("%s.%d", l.prefix, i+2) }
func (l *testLAN) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces (and the veths and pod bridges in them)
// and the bridge, whatever state the test left them in.
func (l *testLAN) remove() {
	for i, ns := range l.netns {
		_ = exec.Command("ip", "link", "del", l.hostVeth(i)).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	_ = exec.Command("ip", "link", "del", l.bridge).Run()
}

// startAgent runs `stead agent` as node i of the LAN, joining server.
func (l *testLAN) startAgent(server *cluster, i int, extra ...string) *cluster {
	l.t.Helper()
	a := &cluster{
		t: l.t, dataDir: l.t.TempDir(), command: "agent", netns: l.netns[i],
		extra: append([]string{
			"--server", fmt.Sprintf("https://%s:%d", l.serverIP(), server.port),
			"--token-file", filepath.Join(server.dataDir, "agent-token"),
			"--node-name", fmt.Sprintf("node-%c", 'a'+i),
			"--node-ip", l.nodeIP(i),
		}, extra...),
	}
	l.t.Cleanup(func() {
		if l.t.Failed() {
			l.t.Logf("%s (%s):\n%s\nlast of its stead.log:\n%s", a.extra[5], a.netns, a.stderr, tail(filepath.Join(a.dataDir, "logs", "stead.log"), 40))
		}
		a.stop()
		a.cleanupNode()
	})
	a.start()
	return a
}

// newAgentCluster is a server on the LAN's bridge and one agent per node
// machine, with the test images, all nodes Ready.
func newAgentCluster(t *testing.T, nodes int, agentFlags ...string) (*testLAN, *cluster, []*cluster) {
	lan := newTestLAN(t, nodes)
	// Pods' range: the host drops what it would send there, so that a
	// reply to a pod that was not masqueraded dies here rather than
	// follows the host's default route.
	const podRange = "10.98.0.0/16"
	lan.run("ip", "route", "add", "blackhole", podRange)
	t.Cleanup(func() { _ = exec.Command("ip", "route", "del", "blackhole", podRange).Run() })
	server := &cluster{t: t, dataDir: t.TempDir(), port: freePort(t), command: "server",
		extra: []string{"--bind-address", lan.serverIP(), "--cluster-cidr", podRange}}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := server.kubectl("", "get", "pods,nodes,csr,events", "-A", "-o", "wide")
			t.Logf("the cluster at the failure:\n%s\nlast of the server's stead.log:\n%s\nits failover and taint lines:\n%s", out,
				tail(filepath.Join(server.dataDir, "logs", "stead.log"), 40), grepFile(filepath.Join(server.dataDir, "logs", "stead.log"), "failover", "aint"))
		}
		server.stop()
	})
	server.start()
	var agents []*cluster
	for i := range nodes {
		a := lan.startAgent(server, i, append([]string{"--cluster-cidr", podRange}, agentFlags...)...)
		if err := a.importTestImages(); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	eventually(t, 60*time.Second, "every node Ready", func() error {
		out, err := server.kubectl("", "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil || strings.Count(out, "=True") != nodes {
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	})
	return lan, server, agents
}

// A server and two agents, each in its own network namespace: the agents
// join with the server's token, get their certificates through the CSR
// API, and run a StatefulSet whose pods, one per node, reach each other by
// address and by DNS name across the nodes; the API server reaches each
// node's kubelet API for exec. An agent killed and started again adopts
// its pod and keeps its credentials.
func TestAgentsJoinAndRoutePods(t *testing.T) {
	lan, server, agents := newAgentCluster(t, 2)
	if !strings.Contains(server.stderr.String(), "nodes join with   stead agent --server https://"+lan.serverIP()) {
		t.Errorf("stead server does not say how nodes join:\n%s", server.stderr)
	}

	// A token that pins another CA is refused before anything is sent.
	wrong := regexp.MustCompile(`K10[0-9a-f]{64}`).ReplaceAllString(readFile(t, filepath.Join(server.dataDir, "agent-token")), "K10"+strings.Repeat("0", 64))
	out, err := exec.Command("nsenter", netnsArgs(lan.netns[0], "agent", "--data-dir", t.TempDir(),
		"--server", fmt.Sprintf("https://%s:%d", lan.serverIP(), server.port), "--token", wrong)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "did not present the CA this token pins") {
		t.Errorf("agent with another cluster's token: %v\n%s", err, out)
	}

	csrs := server.mustKubectl("", "get", "csr", "-o", `jsonpath={range .items[*]}{.spec.signerName} {.spec.username} {.status.conditions[0].type} {.status.certificate}{"\n"}{end}`)
	for _, want := range []string{
		"kubernetes.io/kube-apiserver-client-kubelet system:bootstrap:",
		"kubernetes.io/kubelet-serving system:node:node-a Approved",
		"kubernetes.io/kubelet-serving system:node:node-b Approved",
	} {
		if !strings.Contains(csrs, want) {
			t.Errorf("no CSR %q among:\n%s", want, csrs)
		}
	}
	if n := strings.Count(csrs, "\n"); n != 4 {
		t.Errorf("%d CSRs, want 4 (a client and a serving certificate per node):\n%s", n, csrs)
	}

	// A server elects itself to run stead's controllers, as it does for
	// the controller manager and the scheduler: another server sharing
	// its etcd would wait for the Lease.
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, lease := range []string{"stead-controllers", "kube-controller-manager", "kube-scheduler"} {
		holder := server.mustKubectl("", "-n", "kube-system", "get", "lease", lease, "-o", "jsonpath={.spec.holderIdentity}")
		if !strings.HasPrefix(holder, host+"_") {
			t.Errorf("lease kube-system/%s held by %q, want this server (%s_…)", lease, holder, host)
		}
	}

	server.mustKubectl(`apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: httpd
        image: busybox:1.28.4
        imagePullPolicy: Never
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
        ports: [{containerPort: 80, hostPort: 8080}]
        readinessProbe:
          tcpSocket: {port: 80}
          periodSeconds: 1
`, "apply", "-f", "-")
	type pod struct{ node, ip, uid string }
	pods := map[string]pod{}
	eventually(t, 120*time.Second, "web-0 and web-1 Ready on different nodes", func() error {
		out, err := server.kubectl("", "get", "pods", "-l", "app=web", "-o",
			`jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP} {.metadata.uid} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		if err != nil {
			return fmt.Errorf("%v %s", err, out)
		}
		clear(pods)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) != 5 || f[4] != "True" {
				return fmt.Errorf("pods:\n%s", out)
			}
			pods[f[0]] = pod{f[1], f[2], f[3]}
		}
		if len(pods) != 2 || pods["web-0"].node == pods["web-1"].node {
			return fmt.Errorf("pods:\n%s", out)
		}
		return nil
	})

	// exec reaches each node's kubelet API through the API server, which
	// verifies its CSR-issued serving certificate.
	for _, name := range []string{"web-0", "web-1"} {
		if got := strings.TrimSpace(server.mustKubectl("", "exec", name, "--", "hostname")); got != name {
			t.Errorf("kubectl exec %s -- hostname: %q", name, got)
		}
	}
	// Pod to pod across the nodes, by address, then by the headless names
	// that each node's cluster DNS serves.
	if got := strings.TrimSpace(server.mustKubectl("", "exec", "web-0", "--", "wget", "-qO-", "http://"+pods["web-1"].ip)); got != "web-1" {
		t.Errorf("web-0 → web-1's address %s: %q", pods["web-1"].ip, got)
	}
	// A name appears once the endpointslice controller has published the
	// Ready pod and the node's DNS has seen it: within moments.
	eventually(t, 30*time.Second, "nslookup web-1.web in web-0", func() error {
		if out, err := server.kubectl("", "exec", "web-0", "--", "nslookup", "web-1.web"); err != nil || !strings.Contains(out, pods["web-1"].ip) {
			return fmt.Errorf("no %s: %v\n%s", pods["web-1"].ip, err, out)
		}
		return nil
	})
	eventually(t, 30*time.Second, "web-1 → http://web-0.web", func() error {
		if out, err := server.kubectl("", "exec", "web-1", "--", "wget", "-qO-", "http://web-0.web"); err != nil || strings.TrimSpace(out) != "web-0" {
			return fmt.Errorf("%v %q", err, out)
		}
		return nil
	})
	// Pods on the agents reach the API server through the kubernetes
	// Service, at the server's address: Go's TLS server answers a plain
	// HTTP request itself.
	for _, pod := range []string{"web-0", "web-1"} {
		out, err := server.kubectl("", "exec", pod, "--", "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc kubernetes.default.svc 443`)
		if err != nil || !strings.Contains(out, "Client sent an HTTP request to an HTTPS server.") {
			t.Errorf("%s → kubernetes.default.svc:443: %v\n%s", pod, err, out)
		}
	}

	// A hostPort: the node's address answers with the pod on it.
	for name, p := range pods {
		nodeIP := lan.nodeIP(int(p.node[len("node-")] - 'a'))
		if got, err := httpGet("http://" + nodeIP + ":8080/"); err != nil || strings.TrimSpace(got) != name {
			t.Errorf("hostPort 8080 on %s (%s): %q, %v; want %s", p.node, nodeIP, got, err, name)
		}
	}
	// Outside the cluster range, pods' connections leave with their node's
	// address: a server on the host sees web-0's node, not web-0.
	seen := serveRemoteAddr(t, lan.serverIP())
	from := server.mustKubectl("", "exec", "web-0", "--", "wget", "-qO-", "http://"+seen)
	if want := lan.nodeIP(int(pods["web-0"].node[len("node-")] - 'a')); strings.TrimSpace(from) != want {
		t.Errorf("web-0's connection to the host came from %q, want its node's address %s", from, want)
	}

	// kill -9 of the agent of web-0's node: started again, it adopts the
	// pod (same uid, never a second one) with the credentials it kept.
	i := int(pods["web-0"].node[len("node-")] - 'a')
	agents[i].kill()
	agents[i].start()
	eventually(t, 60*time.Second, pods["web-0"].node+" Ready again", func() error {
		out, err := server.kubectl("", "get", "node", pods["web-0"].node, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || out != "True" {
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	})
	if got := server.mustKubectl("", "get", "pod", "web-0", "-o", "jsonpath={.metadata.uid} {.status.phase}"); got != pods["web-0"].uid+" Running" {
		t.Errorf("web-0 after its agent's kill -9: %q, want the same pod (%s) Running", got, pods["web-0"].uid)
	}
	eventually(t, 30*time.Second, "web-0 → http://web-1.web after the restart", func() error {
		if out, err := server.kubectl("", "exec", "web-0", "--", "wget", "-qO-", "http://web-1.web"); err != nil || strings.TrimSpace(out) != "web-1" {
			return fmt.Errorf("%v %q", err, out)
		}
		return nil
	})
	if after := server.mustKubectl("", "get", "csr", "-o", "name"); strings.Count(after, "\n") != 4 {
		t.Errorf("the restarted agent asked for new certificates:\n%s", after)
	}

	// A node renews its client certificate as itself (what it does past
	// 80 % of the certificate's life): the controller manager approves
	// and signs such a CSR from node-a's own credentials.
	renewal := nodeCertificateRequest(t, "node-a")
	nodeKubeconfig := filepath.Join(t.TempDir(), "node-a.kubeconfig")
	agentDir := filepath.Join(agents[0].dataDir, "agent")
	server.mustKubectl("", "config", "--kubeconfig", nodeKubeconfig, "set-cluster", "stead", "--server", fmt.Sprintf("https://%s:%d", lan.serverIP(), server.port),
		"--certificate-authority", filepath.Join(agentDir, "ca.crt"))
	server.mustKubectl("", "config", "--kubeconfig", nodeKubeconfig, "set-credentials", "node",
		"--client-certificate", filepath.Join(agentDir, "node.crt"), "--client-key", filepath.Join(agentDir, "node.key"))
	server.mustKubectl("", "config", "--kubeconfig", nodeKubeconfig, "set-context", "node", "--cluster", "stead", "--user", "node")
	if out, err := server.kubectl(renewal, "--kubeconfig", nodeKubeconfig, "--context", "node", "create", "-f", "-"); err != nil {
		t.Fatalf("node-a creating its renewal CSR: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "node-a's renewal CSR approved and signed", func() error {
		out, err := server.kubectl("", "get", "csr", "node-a-renewal", "-o", `jsonpath={.spec.username} {.status.conditions[0].type} {.status.certificate}`)
		if f := strings.Fields(out); err != nil || len(f) != 3 || f[0] != "system:node:node-a" || f[1] != "Approved" {
			return fmt.Errorf("%v %q", err, out)
		}
		return nil
	})

	server.mustKubectl("", "delete", "statefulset", "web")
	eventually(t, 60*time.Second, "pods gone", func() error {
		if out := server.mustKubectl("", "get", "pods", "-o", "name"); strings.TrimSpace(out) != "" {
			return fmt.Errorf("pods %s", out)
		}
		return nil
	})
}

// grepFile is the lines of a file that hold any of words, for a failure's log.
func grepFile(path string, words ...string) string {
	data, _ := os.ReadFile(path)
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				lines = append(lines, line)
				break
			}
		}
	}
	return strings.Join(lines, "\n")
}

// tail is the last n lines of a file, for a failure's log.
func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func httpGet(url string) (string, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// serveRemoteAddr serves, on ip until the test ends, each caller's own
// address; it returns the address it listens on.
func serveRemoteAddr(t *testing.T, ip string) string {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintln(w, host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// containerPids are the host pids of the containers an agent has state for.
func containerPids(t *testing.T, dataDir string) []int {
	t.Helper()
	states, _ := filepath.Glob(filepath.Join(dataDir, "run", "state", "*", "state.json"))
	var pids []int
	for _, path := range states {
		var st struct {
			Pid int `json:"init_process_pid"`
		}
		if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &st) == nil && st.Pid > 0 {
			pids = append(pids, st.Pid)
		}
	}
	return pids
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// A node cut off from the server fences itself and its StatefulSet pod is
// recreated on the other node, by itself (upstream leaves it Terminating
// for ever), and only once the old one's processes are dead: never two
// pods of one identity. When the node is back, the new pod stays where it
// is and the node is in service again.
func TestAgentFailoverAfterPartition(t *testing.T) {
	lan, server, agents := newAgentCluster(t, 2)
	server.mustKubectl(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:1.28.4
        imagePullPolicy: Never
        command: [sleep, "3600"]
`, "apply", "-f", "-")
	var uid, nodeName string
	eventually(t, 90*time.Second, "db-0 Running", func() error {
		out, err := server.kubectl("", "get", "pod", "db-0", "-o", `jsonpath={.metadata.uid} {.spec.nodeName} {.status.phase}`)
		if f := strings.Fields(out); err == nil && len(f) == 3 && f[2] == "Running" {
			uid, nodeName = f[0], f[1]
			return nil
		}
		return fmt.Errorf("%v %s", err, out)
	})
	lost := int(nodeName[len("node-")] - 'a')
	oldPids := containerPids(t, agents[lost].dataDir)
	if len(oldPids) != 1 || !alive(oldPids[0]) {
		t.Fatalf("db-0's container on %s: pids %v", nodeName, oldPids)
	}
	if got := server.mustKubectl("", "get", "node", nodeName, "-o", "jsonpath={.metadata.annotations.stead\\.io/self-fencing-seconds}"); got != "35" {
		t.Errorf("node %s says it fences itself after %q s, want 35", nodeName, got)
	}

	cut := time.Now()
	lan.run("ip", "link", "set", lan.hostVeth(lost), "down")
	var newNode string
	eventually(t, 180*time.Second, "db-0 recreated on the other node", func() error {
		out, err := server.kubectl("", "get", "pod", "db-0", "-o", `jsonpath={.metadata.uid} {.spec.nodeName} {.status.phase}`)
		f := strings.Fields(out)
		if err != nil || len(f) != 3 || f[0] == uid || f[2] != "Running" {
			return fmt.Errorf("%v %s", err, out)
		}
		// The moment the new one is seen running, the old one is dead.
		if alive(oldPids[0]) {
			t.Fatalf("db-0 runs on %s while its old container (pid %d) still runs on %s", f[1], oldPids[0], nodeName)
		}
		newNode = f[1]
		return nil
	})
	t.Logf("db-0 failed over from %s to %s %.1fs after the cut", nodeName, newNode, time.Since(cut).Seconds())
	if newNode == nodeName {
		t.Fatalf("db-0 recreated on the lost node %s", nodeName)
	}
	if got := server.mustKubectl("", "get", "node", nodeName, "-o", `jsonpath={.spec.taints[?(@.key=="node.kubernetes.io/out-of-service")].value}`); got != "stead-self-fenced" {
		t.Errorf("the lost node's out-of-service taint: %q", got)
	}
	if log := readFile(t, filepath.Join(agents[lost].dataDir, "logs", "fence-keeper.log")); !strings.Contains(log, "fenced") {
		t.Errorf("the lost node's fence keeper did not fence:\n%s", log)
	}

	lan.run("ip", "link", "set", lan.hostVeth(lost), "up")
	eventually(t, 90*time.Second, nodeName+" Ready and in service again", func() error {
		out, err := server.kubectl("", "get", "node", nodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.taints}`)
		if err != nil || strings.TrimSpace(out) != "True" {
			return fmt.Errorf("%v %q", err, out)
		}
		return nil
	})
	// Back, the node ran nothing of the old db-0 again.
	time.Sleep(3 * time.Second)
	for _, pid := range containerPids(t, agents[lost].dataDir) {
		if alive(pid) {
			t.Errorf("%s runs a container again (pid %d) after it was fenced", nodeName, pid)
		}
	}
	if got := server.mustKubectl("", "get", "pods", "-l", "app=db", "-o", `jsonpath={range .items[*]}{.metadata.name}@{.spec.nodeName} {end}`); strings.TrimSpace(got) != "db-0@"+newNode {
		t.Errorf("db pods after the node is back: %q, want db-0@%s only", got, newNode)
	}
	server.mustKubectl("", "delete", "statefulset", "db")
}

// nodeCertificateRequest is a CSR manifest, node-<name>-renewal, for a
// node client certificate of name, as a node asks to renew its own.
func nodeCertificateRequest(t *testing.T, node string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	request := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	return fmt.Sprintf(`apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {name: %s-renewal}
spec:
  signerName: kubernetes.io/kube-apiserver-client-kubelet
  usages: [digital signature, client auth]
  request: %s
`, node, request)
}
