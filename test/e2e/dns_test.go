package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Pods do not run yet, so the endpoints are written by hand, as an
// operator does for a Service without a selector; the cluster DNS must
// answer from them exactly as it will for a StatefulSet's pods.
const dnsObjects = `apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  ports: [{name: web, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: nginx-manual
  labels: {kubernetes.io/service-name: nginx}
addressType: IPv4
ports: [{name: web, port: 80, protocol: TCP}]
endpoints:
- addresses: [10.42.0.10]
  hostname: web-0
  conditions: {ready: true}
- addresses: [10.42.0.11]
  hostname: web-1
  conditions: {ready: true}
- addresses: [10.42.0.12]
  hostname: web-2
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  ports: [{name: http, port: 80}]
`

func TestClusterDNS(t *testing.T) {
	dnsPort := freePort(t)
	c := newCluster(t, "--cluster-dns-listen", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	c.mustKubectl(dnsObjects, "apply", "-f", "-")
	clusterIP := c.mustKubectl("", "get", "service", "front", "-o", "jsonpath={.spec.clusterIP}")

	server := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	lookup := func(name string, qtype uint16) ([]string, int, error) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		in, _, err := new(dns.Client).Exchange(m, server)
		if err != nil {
			return nil, 0, err
		}
		var got []string
		for _, rr := range in.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				got = append(got, rr.A.String())
			case *dns.SRV:
				got = append(got, fmt.Sprintf("%d %s", rr.Port, rr.Target))
			}
		}
		slices.Sort(got)
		return got, in.Rcode, nil
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		want  []string
		rcode int
	}{
		{"web-0.nginx.default.svc.cluster.local", dns.TypeA, []string{"10.42.0.10"}, dns.RcodeSuccess},
		{"web-1.nginx.default.svc.cluster.local", dns.TypeA, []string{"10.42.0.11"}, dns.RcodeSuccess},
		{"web-2.nginx.default.svc.cluster.local", dns.TypeA, nil, dns.RcodeNameError}, // not ready
		{"nginx.default.svc.cluster.local", dns.TypeA, []string{"10.42.0.10", "10.42.0.11"}, dns.RcodeSuccess},
		{"_web._tcp.nginx.default.svc.cluster.local", dns.TypeSRV, []string{"80 web-0.nginx.default.svc.cluster.local.", "80 web-1.nginx.default.svc.cluster.local."}, dns.RcodeSuccess},
		{"front.default.svc.cluster.local", dns.TypeA, []string{clusterIP}, dns.RcodeSuccess},
		{"nothere.default.svc.cluster.local", dns.TypeA, nil, dns.RcodeNameError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			var rcode int
			eventually(t, 20*time.Second, tc.name, func() error {
				var err error
				got, rcode, err = lookup(tc.name, tc.qtype)
				if err != nil {
					return err
				}
				if rcode != tc.rcode || !slices.Equal(got, tc.want) {
					return fmt.Errorf("got %s %q, want %s %q", dns.RcodeToString[rcode], got, dns.RcodeToString[tc.rcode], tc.want)
				}
				return nil
			})
		})
	}

	// web-2 turns ready: it gets its name, as a replacement pod does.
	c.mustKubectl("", "patch", "endpointslice", "nginx-manual", "--type=json", "-p", `[{"op":"replace","path":"/endpoints/2/conditions/ready","value":true}]`)
	eventually(t, 20*time.Second, "web-2 answers once ready", func() error {
		got, _, err := lookup("web-2.nginx.default.svc.cluster.local", dns.TypeA)
		if err != nil || !slices.Equal(got, []string{"10.42.0.12"}) {
			return fmt.Errorf("%v %q", err, got)
		}
		return nil
	})
}
