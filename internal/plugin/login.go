package plugin

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

type loginOptions struct {
	*options
	reconnect    bool
	orgType      string
	instanceURL  string
	clientID     string
	secretName   string
	dryRun       string
	secretFormat string
	noBrowser    bool
	wait         bool
	port         int
	loginTimeout time.Duration
	timeout      time.Duration
	print        *genericclioptions.PrintFlags
}

func (o *options) loginCommand(reconnect bool) *cobra.Command {
	lo := &loginOptions{options: o, reconnect: reconnect, print: genericclioptions.NewPrintFlags("created").WithTypeSetter(Scheme)}
	cmd := &cobra.Command{
		Use:   "login NAME --type TYPE [--instance-url URL] [--client-id ID]",
		Short: "Log in to an org in the browser and connect it: writes its Secret, creates the SalesforceOrg",
		Long: `Log in to a Salesforce org in the browser, with the OAuth 2.0 web-server flow and PKCE exactly as
"sf org login web" runs it (client id PlatformCLI, callback http://localhost:1717/OauthRedirect), then
write the auth URL into the org's Secret (labelled salesforce.sfops.io/credential=true) and create
the SalesforceOrg when it does not exist. The operator checks the org at once; the command waits
for its answer (--wait=false to skip).

With --dry-run=client -o yaml nothing is contacted: the SalesforceOrg is printed for a GitOps
repository, never the Secret. Commit the org, and once it is applied run "kubectl salesforce login
NAME" against the cluster to put the credential into its Secret. Next step, not yet built:
--secret-format sealed|sops, to print the Secret as a SealedSecret or SOPS-encrypted manifest that
may be committed too.`,
		Example: `  kubectl salesforce login acme-uat --type Sandbox
  kubectl salesforce login acme-prod --type Production --instance-url https://acme.my.salesforce.com
  kubectl salesforce login acme-uat --type Sandbox --dry-run=client -o yaml > acme-uat.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return lo.run(cmd.Context(), cmd, args[0]) },
	}
	if reconnect {
		cmd.Use = "reconnect NAME"
		cmd.Short = "Log in again for a disconnected org, into its existing Secret, and wait until it is Connected"
		cmd.Long = `Log in again in the browser for an existing SalesforceOrg (the seed's Reconnect button): the same
web-server flow as "login", the new auth URL written into the org's existing Secret, a check
requested at once, and the command waits for the operator's answer. Exit code 0 when Ready,
1 when not, 2 when the operator did not answer.`
		cmd.Example = `  kubectl salesforce reconnect acme-uat`
	}
	f := cmd.Flags()
	if !reconnect {
		f.StringVar(&lo.orgType, "type", "", "The org's type when the SalesforceOrg is created: Production, Sandbox, DeveloperEdition or Scratch. Selects the login host (test.salesforce.com for Sandbox and Scratch).")
		f.StringVar(&lo.secretName, "secret", "", "Name of the Secret to create for a new org (default NAME-auth).")
		f.StringVar(&lo.dryRun, "dry-run", "none", `"client" prints the SalesforceOrg (never the Secret) without contacting Salesforce or the cluster.`)
		f.Lookup("dry-run").NoOptDefVal = "client"
		f.StringVar(&lo.secretFormat, "secret-format", "", "Next step, not yet built: sealed|sops, to print the credential as a SealedSecret or SOPS-encrypted manifest that may be committed to Git.")
		lo.print.AddFlags(cmd)
	}
	f.StringVar(&lo.instanceURL, "instance-url", "", "Login URL: https://login.salesforce.com by default (https://test.salesforce.com for Sandbox and Scratch), or the org's My Domain URL.")
	f.StringVar(&lo.clientID, "client-id", salesforce.ShortFormClientID, "Connected app consumer key. Its callback must be http://localhost:<port>/OauthRedirect.")
	f.BoolVar(&lo.noBrowser, "no-browser", false, "Print the login URL instead of opening a browser (for a headless machine; forward the callback port with ssh -L 1717:localhost:1717).")
	f.DurationVar(&lo.loginTimeout, "login-timeout", 5*time.Minute, "How long to wait for the browser login.")
	f.DurationVar(&lo.timeout, "timeout", 2*time.Minute, "How long to wait for the operator's check.")
	if !reconnect {
		f.BoolVar(&lo.wait, "wait", true, "Wait for the operator's check and print it.")
	}
	f.IntVar(&lo.port, "callback-port", DefaultCallbackPort, "Port of the local login callback (127.0.0.1 only); the connected app's callback must match it.")
	_ = f.MarkHidden("callback-port")
	return cmd
}

func (lo *loginOptions) run(ctx context.Context, cmd *cobra.Command, name string) error {
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if lo.secretFormat != "" {
		return fmt.Errorf("--secret-format %s is not built yet: for now create the SalesforceOrg from Git (--dry-run=client -o yaml) and run \"kubectl salesforce login %s\" against the cluster to write its Secret", lo.secretFormat, name)
	}
	ns, err := lo.namespace()
	if err != nil {
		return err
	}
	if lo.orgType != "" && !validType(lo.orgType) {
		return fmt.Errorf("--type %q is not one of Production, Sandbox, DeveloperEdition, Scratch", lo.orgType)
	}
	switch lo.dryRun {
	case "none", "":
	case "client":
		return lo.printDryRun(cmd, ns, name)
	default:
		return fmt.Errorf(`--dry-run must be "none" or "client" (a server-side dry run would need the credential)`)
	}

	kc, err := lo.client()
	if err != nil {
		return err
	}
	org, found, err := getOrg(ctx, kc, ns, name)
	if err != nil {
		return err
	}
	secretName, key := lo.secretName, sfv1.DefaultAuthSecretKey
	switch {
	case !found && lo.reconnect:
		return fmt.Errorf("SalesforceOrg %s/%s not found: connect a new org with \"kubectl salesforce login %s --type <type>\"", ns, name, name)
	case !found && lo.orgType == "":
		return fmt.Errorf("SalesforceOrg %s/%s does not exist yet: give its --type (Production, Sandbox, DeveloperEdition or Scratch) to create it", ns, name)
	case !found:
		if secretName == "" {
			secretName = name + "-auth"
		}
	case org.Spec.AuthSecretRef.Name == "":
		return fmt.Errorf("SalesforceOrg %s/%s has no authSecretRef (it authenticates with %s): a browser login cannot change that; edit its spec instead",
			ns, name, credentialSourceOf(org))
	default:
		if lo.orgType != "" && lo.orgType != string(org.Spec.Type) {
			return fmt.Errorf("SalesforceOrg %s/%s is of type %s, not %s: change spec.type first, or leave --type out", ns, name, org.Spec.Type, lo.orgType)
		}
		if secretName != "" && secretName != org.Spec.AuthSecretRef.Name {
			return fmt.Errorf("SalesforceOrg %s/%s reads its credential from Secret %s, not %s: leave --secret out", ns, name, org.Spec.AuthSecretRef.Name, secretName)
		}
		secretName = org.Spec.AuthSecretRef.Name
		if org.Spec.AuthSecretRef.Key != "" {
			key = org.Spec.AuthSecretRef.Key
		}
	}

	sf, err := lo.salesforceClient()
	if err != nil {
		return err
	}
	loginURL := lo.instanceURL
	if loginURL == "" {
		_, _, contextLoginURL, err := lo.salesforceSettings()
		if err != nil {
			return err
		}
		loginURL = defaultLoginURL(ctx, kc, org, lo.orgType, ns, secretName, key, contextLoginURL)
	}
	a, err := webLogin(ctx, sf, lo.env, errw, loginURL, lo.clientID, lo.port, lo.noBrowser, lo.loginTimeout)
	if err != nil {
		return withPluginHint(err)
	}
	created, err := writeAuthSecret(ctx, kc, ns, secretName, key, a)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "secret/%s %s\n", secretName, map[bool]string{true: "created", false: "configured"}[created])

	if !found {
		org = newOrg(ns, name, lo.orgType, secretName)
		org.Annotations = map[string]string{sfv1.ReconcileRequestedAtAnnotation: time.Now().UTC().Format(time.RFC3339Nano)}
		if err := kc.Create(ctx, org); err != nil {
			return fmt.Errorf("creating SalesforceOrg %s/%s (its Secret %s is written): %w", ns, name, secretName, apiError(err))
		}
		fmt.Fprintf(out, "salesforceorg.salesforce.sfops.io/%s created\n", name)
	} else if _, err := requestCheck(ctx, kc, org); err != nil {
		return err
	}
	if !lo.wait && !lo.reconnect {
		return nil
	}
	ans, err := waitForAnswer(ctx, kc, types.NamespacedName{Namespace: ns, Name: name}, org.Annotations[sfv1.ReconcileRequestedAtAnnotation], lo.timeout)
	if err != nil {
		return err
	}
	return report(out, ans)
}

func (lo *loginOptions) printDryRun(cmd *cobra.Command, ns, name string) error {
	if lo.orgType == "" {
		return fmt.Errorf("--dry-run=client needs --type (Production, Sandbox, DeveloperEdition or Scratch)")
	}
	secretName := lo.secretName
	if secretName == "" {
		secretName = name + "-auth"
	}
	printer, err := lo.print.ToPrinter()
	if err != nil {
		return err
	}
	obj, err := manifest(newOrg(ns, name, lo.orgType, secretName))
	if err != nil {
		return err
	}
	if err := printer.PrintObj(obj, cmd.OutOrStdout()); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "The credential is not in this output. Once the org is applied, run: kubectl salesforce login %s -n %s\n", name, ns)
	return nil
}

// manifest is org as a GitOps repository holds it: no status.
func manifest(org *sfv1.SalesforceOrg) (runtime.Object, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(org)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	unstructured.RemoveNestedField(m, "metadata", "creationTimestamp")
	return &unstructured.Unstructured{Object: m}, nil
}

func newOrg(ns, name, orgType, secretName string) *sfv1.SalesforceOrg {
	return &sfv1.SalesforceOrg{
		TypeMeta:   metav1.TypeMeta{APIVersion: sfv1.GroupVersion.String(), Kind: "SalesforceOrg"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: sfv1.SalesforceOrgSpec{
			Type:          sfv1.OrgType(orgType),
			AuthSecretRef: sfv1.SecretKeyReference{Name: secretName},
		},
	}
}

func validType(t string) bool {
	switch sfv1.OrgType(t) {
	case sfv1.OrgTypeProduction, sfv1.OrgTypeSandbox, sfv1.OrgTypeDeveloperEdition, sfv1.OrgTypeScratch:
		return true
	}
	return false
}

func credentialSourceOf(org *sfv1.SalesforceOrg) string {
	switch {
	case org.Spec.JWT != nil:
		return "jwt"
	case org.Spec.SandboxOf != nil:
		return "sandboxOf"
	}
	return "no credential source"
}

// defaultLoginURL is where an org logs in when --instance-url is not given: an existing org's
// own host (from its Secret, else its status), else the kubeconfig context's Salesforce
// (contextLoginURL, as make run's demo sets it), else login. or test. by type.
func defaultLoginURL(ctx context.Context, kc client.Client, org *sfv1.SalesforceOrg, orgType, ns, secretName, key, contextLoginURL string) string {
	if org != nil {
		s := &corev1.Secret{}
		if kc.Get(ctx, types.NamespacedName{Namespace: ns, Name: secretName}, s) == nil {
			if a, err := salesforce.ParseAuthURL(string(s.Data[key])); err == nil {
				return a.InstanceURL()
			}
		}
		if u, err := url.Parse(org.Status.InstanceURL); err == nil && u.Scheme == "https" && u.Host != "" {
			return "https://" + u.Host
		}
		orgType = string(org.Spec.Type)
	}
	if contextLoginURL != "" {
		return contextLoginURL
	}
	return loginURLForType(orgType)
}

func loginURLForType(t string) string {
	if strings.EqualFold(t, string(sfv1.OrgTypeSandbox)) || strings.EqualFold(t, string(sfv1.OrgTypeScratch)) {
		return salesforce.SandboxLoginURL
	}
	return salesforce.ProductionLoginURL
}
