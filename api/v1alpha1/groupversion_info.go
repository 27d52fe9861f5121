// Package v1alpha1 holds the salesforce.sfops.io/v1alpha1 API: SalesforceOrg, PipelineStage and
// SalesforceImplementation. The types validate themselves through OpenAPI and CEL markers; they
// must never carry a credential: secrets are only ever referenced, never embedded.
// +kubebuilder:object:generate=true
// +groupName=salesforce.sfops.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every object in this package.
	GroupVersion = schema.GroupVersion{Group: "salesforce.sfops.io", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this package to a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
