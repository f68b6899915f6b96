// Command kubelet is the upstream kubelet, built from the same k8s.io/kubernetes module as the control
// plane, for the tests' real one-node cluster (tests/node).
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
