package policy_test

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tabbynet/tabby/policy"
)

// A pod as the Kubernetes API gives it, as the endpoint policy evaluates.
func ExampleEndpointFromPod() {
	ep, err := policy.EndpointFromPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-0", Labels: map[string]string{"app": "db"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "db",
			Containers: []corev1.Container{{Name: "postgres", Ports: []corev1.ContainerPort{
				{Name: "pg", ContainerPort: 5432},
			}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "10.244.1.7"}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ep.Key(), ep.Labels, ep.ServiceAccount, ep.Addresses, ep.Ports)
	// Output: shop/db-0 map[app:db] db [10.244.1.7] [{pg TCP 5432}]
}
