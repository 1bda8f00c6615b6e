// Command nslookup is the nslookup of the busybox:1.28.4 test image.
//
// busybox 1.28's nslookup asked the C library, so names were looked up the
// way every program in the pod looks them up: with the search domains and
// ndots of /etc/resolv.conf, which is why `nslookup web-0.nginx` answers in
// a Kubernetes pod. Debian's busybox (1.35) has the later built-in resolver,
// which sends a dotted name as it is and so answers NXDOMAIN there; this
// program keeps the 1.28 behaviour and output so the image behaves as the
// image it stands for. It uses Go's resolver, which reads /etc/resolv.conf
// as the C library does.
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 || len(args) > 2 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(os.Stderr, "BusyBox v1.28.4 multi-call binary.\n\nUsage: nslookup [HOST] [SERVER]\n\nQuery the nameserver for the IP address of the given HOST\noptionally using a specified DNS server")
		os.Exit(1)
	}
	server := firstNameserver()
	if len(args) == 2 {
		server = args[1]
	}
	resolver := &net.Resolver{PreferGo: true}
	if len(args) == 2 {
		resolver.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort(server, "53"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if server != "" {
		printHost(ctx, resolver, server, "Server:")
	}
	if !printHost(ctx, resolver, args[0], "Name:") {
		os.Exit(1)
	}
}

// printHost prints the name's addresses, each with its reverse name when
// there is one, as busybox 1.28's print_host does.
func printHost(ctx context.Context, r *net.Resolver, host, header string) bool {
	var addrs []string
	if ip := net.ParseIP(host); ip != nil {
		addrs = []string{ip.String()}
	} else {
		ips, err := r.LookupIPAddr(ctx, host)
		if err != nil || len(ips) == 0 {
			fmt.Fprintf(os.Stderr, "nslookup: can't resolve '%s'\n", host)
			return false
		}
		for _, ip := range ips {
			addrs = append(addrs, ip.IP.String())
		}
	}
	fmt.Printf("%-10s %s\n", header, host)
	for i, addr := range addrs {
		fmt.Printf("Address %d: %s", i+1, addr)
		if names, err := r.LookupAddr(ctx, addr); err == nil && len(names) > 0 {
			fmt.Printf(" %s", strings.TrimSuffix(names[0], "."))
		}
		fmt.Println()
	}
	fmt.Println()
	return true
}

func firstNameserver() string {
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "nameserver" {
			return fields[1]
		}
	}
	return ""
}
