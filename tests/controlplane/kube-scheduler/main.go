// Command kube-scheduler is the upstream scheduler: on the tests' node, pods are bound as on any cluster
// (PodDisruptionBudgets, readiness and rollouts all go through the real controllers).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
