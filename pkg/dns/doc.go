// Package dns is stead's cluster DNS server. It serves the Kubernetes
// DNS-based service discovery schema 1.1.0 for one cluster zone
// (cluster.local by default):
//
//   - <svc>.<ns>.svc.<zone> A/AAAA: the ClusterIPs of a Service, or for a
//     headless Service one record per ready endpoint address;
//   - <hostname>.<svc>.<ns>.svc.<zone> A/AAAA per ready endpoint of a headless
//     Service (its hostname, or a name derived from its IP such as 10-0-0-7);
//   - _<port>._<proto>.<svc>.<ns>.svc.<zone> SRV per named port;
//   - CNAME for ExternalName Services, PTR for ClusterIPs and headless
//     endpoint IPs, <a-b-c-d>.<ns>.pod.<zone> (CoreDNS "pods insecure"),
//     dns-version.<zone> TXT and the zone SOA, with NXDOMAIN and NODATA told
//     apart as RFC 2308 asks.
//
// Names outside the zone are forwarded to the host's resolvers.
//
// The records are kept in memory and rebuilt per Service whenever the Service,
// EndpointSlice or Namespace informers report a change, so a query costs a map
// lookup and no API call: every pod of the cluster resolves through this
// server, usually several names per connection it opens (search-path
// expansion), and it has to keep answering while the API server is busy or
// briefly gone. Over UDP, the usual query (one question in lower case that
// the index answers) is answered by a loop per socket from a cache of packed
// replies, in batches of datagrams (fastpath.go, udp_linux.go); everything
// else goes through ServeDNS.
package dns
