// Command kube-controller-manager is the upstream controller manager: Deployments, ReplicaSets, Jobs,
// ServiceAccount tokens and EndpointSlices on the tests' node come from the real controllers.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
