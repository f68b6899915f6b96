// Command kube-proxy is the upstream kube-proxy (iptables mode on the tests' one-node cluster), so a
// Service address reaches its pods as it does on a user's node.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
