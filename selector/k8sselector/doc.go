// Package k8sselector converts between Kubernetes label selectors
// (metav1.LabelSelector, labels.Selector) and Calico selectors
// (selector.Selector), with the semantics Kubernetes gives its selectors:
//
//	sel, err := k8sselector.FromLabelSelector(np.Spec.PodSelector) // nil: nothing, {}: all()
//	ls, err := k8sselector.ToLabelSelector(selector.MustParse(`app == "web" && has(env)`))
//
// FromLabelSelector and FromK8sSelector reject what Kubernetes rejects (keys
// that are not qualified names, invalid label values, In without values, Gt
// and Lt, unknown operators) with Kubernetes' own messages; their errors wrap
// selector.ErrInvalid and come with selector.Nothing(). ToLabelSelector
// converts back wherever the selector is a conjunction a LabelSelector can
// hold (selector.Selector's Requirements) that matches something, leaving
// out terms that matchLabels or another term implies; its errors
// wrap selector.ErrNotLabelSelector, and selector.ErrMatchesNothing for a
// selector that matches nothing, which a LabelSelector cannot write.
//
// # Design
//
//  1. A package of its own. Kubernetes' meta/v1 types bring some 80 packages
//     of API machinery (JSON, CBOR, protobuf helpers); keeping the
//     conversions here leaves package selector free of any import outside the
//     standard library, so a program that only parses and evaluates selectors
//     does not build them.
//  2. Kubernetes decides validity. Keys and values are checked with
//     apimachinery's own validators (content.IsLabelKey, IsLabelValue), so a
//     selector accepted here is one the API server accepts, and every
//     selector FromLabelSelector returns converts back with ToLabelSelector
//     (unless it matches nothing). FuzzFromLabelSelector compares with
//     metav1.LabelSelectorAsSelector and Kubernetes' matcher.
//  3. No state: plain functions, safe for concurrent use.
package k8sselector
