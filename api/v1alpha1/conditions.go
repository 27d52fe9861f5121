package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Condition types. Ready, Reconciling and Stalled follow the kstatus contract, so kubectl wait,
// Argo CD and Flux read health without custom checks.
const (
	// ConditionReady is True when the object does what it declares: for an org, connected to the
	// declared org; for a stage, mapped to an Active, Connected org; for an implementation, every
	// active member connected.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the controller is working towards the declared state.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when nothing will change until a person fixes the input.
	ConditionStalled = "Stalled"
	// ConditionConnected is True when the last check of an org authenticated and read its facts.
	ConditionConnected = "Connected"
	// ConditionSecretWritable says whether a refresh token that Salesforce rotates can be saved:
	// False when the operator may not update the auth Secret, or another tool owns and would
	// overwrite it. Informational: it does not change Ready until a rotation is actually lost.
	ConditionSecretWritable = "SecretWritable"
)

// Condition reasons, PascalCase, stable: alerts and scripts may match on them.
const (
	// ReasonConnected: the last check succeeded.
	ReasonConnected = "Connected"
	// ReasonProgressing: the controller is checking the object now.
	ReasonProgressing = "Progressing"
	// ReasonProgressingWithRetry: Reconciling's reason while a failure is retried (as in Flux);
	// Ready carries the failure's own reason.
	ReasonProgressingWithRetry = "ProgressingWithRetry"
	// ReasonInactive: the org (or stage) is Inactive, so it is not checked.
	ReasonInactive = "Inactive"
	// ReasonImplementationSuspended: the org's implementation is suspended, so it is not checked.
	ReasonImplementationSuspended = "ImplementationSuspended"

	// ReasonSecretNotFound: the Secret named by authSecretRef does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretNotLabelled: the Secret exists but lacks the label salesforce.sfops.io/credential: "true"
	// that lets the operator read it.
	ReasonSecretNotLabelled = "SecretNotLabelled"
	// ReasonSecretKeyNotFound: the Secret exists but lacks the key named by authSecretRef.key.
	ReasonSecretKeyNotFound = "SecretKeyNotFound"
	// ReasonAuthURLInvalid: the Secret's value is not an SFDX auth URL.
	ReasonAuthURLInvalid = "AuthURLInvalid"
	// ReasonAuthConfigInvalid: a JWT configuration cannot be used (private key not PEM, encrypted,
	// not RSA; no client id).
	ReasonAuthConfigInvalid = "AuthConfigInvalid"
	// ReasonHostNotAllowed: the auth URL points at a host outside Salesforce's domains and the allow-list.
	ReasonHostNotAllowed = "HostNotAllowed"
	// ReasonCredentialRejected: Salesforce refused the credential (revoked, expired, wrong client, inactive user).
	ReasonCredentialRejected = "CredentialRejected"
	// ReasonUnreachable: the org could not be reached (DNS, TCP, TLS, timeout).
	ReasonUnreachable = "Unreachable"
	// ReasonServerError: Salesforce answered with a server error or an unreadable answer.
	ReasonServerError = "ServerError"
	// ReasonRateLimited: the org's API request limit is exhausted.
	ReasonRateLimited = "RateLimited"
	// ReasonAPIDisabled: the org's edition or user has no API access.
	ReasonAPIDisabled = "APIDisabled"
	// ReasonOrgGone: the org no longer exists (a deleted or expired scratch org).
	ReasonOrgGone = "OrgGone"
	// ReasonSecretUpdateFailed: a rotated refresh token could not be written back to the Secret.
	ReasonSecretUpdateFailed = "SecretUpdateFailed"
	// ReasonCredentialReverted: something wrote a refresh token that Salesforce had already
	// rotated away back into the Secret; the operator restored the current one.
	ReasonCredentialReverted = "CredentialReverted"
	// ReasonCredentialRotated: Salesforce rotated the refresh token and the operator saved it.
	ReasonCredentialRotated = "CredentialRotated"
	// ReasonSecretWritable: the operator can save a rotated refresh token to the auth Secret.
	ReasonSecretWritable = "SecretWritable"
	// ReasonSecretUpdateForbidden: the operator may not update the auth Secret (RBAC or admission).
	ReasonSecretUpdateForbidden = "SecretUpdateForbidden"
	// ReasonSecretManagedExternally: another controller (External Secrets, Sealed Secrets, Argo CD,
	// Flux) owns the auth Secret and would overwrite a rotated refresh token.
	ReasonSecretManagedExternally = "SecretManagedExternally"

	// ReasonOrgIDChanged: the credential reached another org than spec.orgId pins (a sandbox
	// refresh, or a URL for the wrong org). Without a pin it is only an event.
	ReasonOrgIDChanged = "OrgIDChanged"
	// ReasonTypeMismatch: the org is not of the declared spec.type.
	ReasonTypeMismatch = "TypeMismatch"
	// ReasonNotADevHub: spec.devHub is true but the org cannot create scratch orgs.
	ReasonNotADevHub = "NotADevHub"
	// ReasonDuplicateDefaultDevHub: another org in the namespace is already the default Dev Hub.
	ReasonDuplicateDefaultDevHub = "DuplicateDefaultDevHub"
	// ReasonDeletionBlocked: deletion waits until no Active PipelineStage maps to the org.
	ReasonDeletionBlocked = "DeletionBlocked"
	// ReasonDeletionDeferred: a refused deletion is remembered until no active stage holds the org.
	ReasonDeletionDeferred = "DeletionDeferred"
	// ReasonDeletionReplayed: the operator deleted an org whose deletion it had remembered.
	ReasonDeletionReplayed = "DeletionReplayed"
	// ReasonInUseWhileInactive: the org is Inactive while Active stages still map to it.
	ReasonInUseWhileInactive = "InUseWhileInactive"

	// ReasonOrgNotFound: the stage's orgRef names no SalesforceOrg (yet).
	ReasonOrgNotFound = "OrgNotFound"
	// ReasonOrgInactive: the stage's org is Inactive.
	ReasonOrgInactive = "OrgInactive"
	// ReasonOrgDisconnected: the stage's org is not Connected.
	ReasonOrgDisconnected = "OrgDisconnected"

	// ReasonSuspended: the implementation is suspended.
	ReasonSuspended = "Suspended"
	// ReasonProductionOrgNotFound: productionOrgRef names no SalesforceOrg.
	ReasonProductionOrgNotFound = "ProductionOrgNotFound"
	// ReasonProductionOrgWrongType: productionOrgRef names an org that is not of type Production.
	ReasonProductionOrgWrongType = "ProductionOrgWrongType"
	// ReasonMembersDisconnected: some active member orgs are not Connected.
	ReasonMembersDisconnected = "MembersDisconnected"
	// ReasonImplementationNotFound: an org's implementationRef names no SalesforceImplementation.
	ReasonImplementationNotFound = "ImplementationNotFound"
	// ReasonDeletingMembers: the implementation is deleting its member orgs (deletionPolicy: Delete).
	ReasonDeletingMembers = "DeletingMembers"
	// ReasonProductionOrgNotReady: a sandboxOf org's production org is missing, Inactive or not Connected.
	ReasonProductionOrgNotReady = "ProductionOrgNotReady"
	// ReasonSandboxActivating: the production org says the sandbox is still being activated.
	ReasonSandboxActivating = "SandboxActivating"
	// ReasonSandboxRefreshed: a sandboxOf org was refreshed and re-authorised through its production org.
	ReasonSandboxRefreshed = "SandboxRefreshed"
	// ReasonProductionOrgClaimed: another implementation already names the same production org.
	ReasonProductionOrgClaimed = "ProductionOrgClaimed"
	// ReasonSecretKeyInUse: another SalesforceOrg already keeps its credential chain (a rotating
	// refresh token) under the same Secret key; one chain has one owner.
	ReasonSecretKeyInUse = "SecretKeyInUse"
	// ReasonShardMismatch: a sandboxOf org is in another shard than its production org, whose
	// credential chain only the production org's shard may exchange.
	ReasonShardMismatch = "ShardMismatch"
	// ReasonSecretNameTaken: a Secret the operator keeps for the org (a sandbox's credential, the
	// rotation record) exists already and is not the operator's; it is never taken over.
	ReasonSecretNameTaken = "SecretNameTaken"

	// Reasons of a SalesforceAccessToken (a hand-out of short-lived access). Ready's reason names
	// why no access is held; OrgNotFound, OrgInactive, ImplementationSuspended and
	// SecretNameTaken are shared with the kinds above.

	// ReasonAccessIssued: the Secret holds a live access token of the org.
	ReasonAccessIssued = "AccessIssued"
	// ReasonAccessExpired: the lifetime ended; the Secret was deleted and the token revoked.
	ReasonAccessExpired = "Expired"
	// ReasonAccessDenied: the requester may not use the org (no RBAC verb "use" on it), or no
	// requester is recorded (the admission webhook was bypassed).
	ReasonAccessDenied = "AccessDenied"
	// ReasonOrgNotConnected: the org is not Connected; access is issued once it is.
	ReasonOrgNotConnected = "OrgNotConnected"
	// ReasonStageNotFound: stageRef names no PipelineStage.
	ReasonStageNotFound = "StageNotFound"
	// ReasonStageInactive: the stage named by stageRef is Inactive.
	ReasonStageInactive = "StageInactive"
	// ReasonStageOrgMismatch: the stage named by stageRef maps to another org than orgRef.
	ReasonStageOrgMismatch = "StageOrgMismatch"
	// ReasonOrgDeleted: the org is being deleted; its hand-outs were withdrawn.
	ReasonOrgDeleted = "OrgDeleted"
)

// GetConditions returns the org's status conditions.
func (o *SalesforceOrg) GetConditions() []metav1.Condition { return o.Status.Conditions }

// GetConditions returns the hand-out's status conditions.
func (a *SalesforceAccessToken) GetConditions() []metav1.Condition { return a.Status.Conditions }

// GetConditions returns the stage's status conditions.
func (s *PipelineStage) GetConditions() []metav1.Condition { return s.Status.Conditions }

// GetConditions returns the implementation's status conditions.
func (i *SalesforceImplementation) GetConditions() []metav1.Condition { return i.Status.Conditions }
