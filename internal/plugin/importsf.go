package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// sfOrg is one org of `sf org list --json` (result.nonScratchOrgs, devHubs, sandboxes, other,
// scratchOrgs; the lists overlap). Only the fields used are decoded: the list also carries
// access tokens, which are never read.
type sfOrg struct {
	Alias           string `json:"alias"`
	Username        string `json:"username"`
	OrgID           string `json:"orgId"`
	InstanceURL     string `json:"instanceUrl"`
	IsSandbox       bool   `json:"isSandbox"`
	IsScratch       bool   `json:"isScratch"`
	IsDevHub        bool   `json:"isDevHub"`
	IsExpired       bool   `json:"isExpired"`
	ConnectedStatus string `json:"connectedStatus"`
	Status          string `json:"status"` // scratch orgs: Active, Expired, Deleted
	scratchList     bool
	sandboxList     bool
}

type sfOrgList struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	Result  struct {
		NonScratchOrgs []sfOrg `json:"nonScratchOrgs"`
		DevHubs        []sfOrg `json:"devHubs"`
		Sandboxes      []sfOrg `json:"sandboxes"`
		Other          []sfOrg `json:"other"`
		ScratchOrgs    []sfOrg `json:"scratchOrgs"`
	} `json:"result"`
}

// orgType detects the SalesforceOrg type from the CLI's data: scratch and sandbox flags (or
// lists), a Developer Edition My Domain, else Production.
func (s sfOrg) orgType() sfv1.OrgType {
	host := strings.ToLower(s.InstanceURL)
	switch {
	case s.IsScratch || s.scratchList || strings.Contains(host, ".scratch.my.salesforce.com"):
		return sfv1.OrgTypeScratch
	case s.IsSandbox || s.sandboxList || strings.Contains(host, ".sandbox.my.salesforce.com"):
		return sfv1.OrgTypeSandbox
	case strings.Contains(host, ".develop.my.salesforce.com") || strings.Contains(host, "-dev-ed."):
		return sfv1.OrgTypeDeveloperEdition
	}
	return sfv1.OrgTypeProduction
}

func (s sfOrg) usable() bool {
	if s.IsExpired || strings.EqualFold(s.Status, "Expired") || strings.EqualFold(s.Status, "Deleted") {
		return false
	}
	return s.ConnectedStatus == "" || s.ConnectedStatus == "Connected" || s.scratchList
}

var nonName = regexp.MustCompile(`[^a-z0-9-]+`)

// objectName turns an alias (or a username) into a Kubernetes name.
func objectName(s string) string {
	n := strings.Trim(nonName.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(n) > 58 { // room for "-auth"
		n = strings.TrimRight(n[:58], "-")
	}
	return n
}

func (o *options) importCommand() *cobra.Command {
	var fromSF bool
	var aliases []string
	var dryRun string
	print := genericclioptions.NewPrintFlags("created").WithTypeSetter(Scheme)
	cmd := &cobra.Command{
		Use:   "import --from-sf [--alias A ...]",
		Short: "Import the orgs the local Salesforce CLI knows: a Secret and a SalesforceOrg each",
		Long: `Import orgs the local Salesforce CLI is logged in to ("sf org list --json"): for each one, the auth
URL from "sf org auth show-sfdx-auth-url" goes into a Secret <name>-auth (labelled as a credential)
and a SalesforceOrg <name> is created, named after the alias (else the username), its type
detected from the CLI's data. An existing SalesforceOrg of that name gets the credential in its own
Secret, and a check. Without --alias, every connected org is imported.

With --dry-run=client only the SalesforceOrgs are printed (never a Secret, never a credential),
and the Salesforce CLI is asked only for its list.`,
		Example: `  kubectl salesforce import --from-sf --alias acme-uat --alias acme-prod
  kubectl salesforce import --from-sf --dry-run=client -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !fromSF {
				return errors.New("say where to import from: --from-sf (the local Salesforce CLI) is the only source so far")
			}
			if dryRun != "none" && dryRun != "client" && dryRun != "" {
				return errors.New(`--dry-run must be "none" or "client"`)
			}
			return o.importFromSF(cmd.Context(), cmd, aliases, dryRun == "client", print)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&fromSF, "from-sf", false, "Import from the local Salesforce CLI (sf).")
	f.StringArrayVar(&aliases, "alias", nil, "Alias or username of an org to import (repeatable); default: every connected org.")
	f.StringVar(&dryRun, "dry-run", "none", `"client" prints the SalesforceOrgs (never the Secrets) without writing anything.`)
	f.Lookup("dry-run").NoOptDefVal = "client"
	print.AddFlags(cmd)
	return cmd
}

// runSF runs the Salesforce CLI with --json and decodes its answer. Its output is never printed:
// only the "message" of a failure, which the CLI fills with its own error text.
func (o *options) runSF(ctx context.Context, into any, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.env.SF, append(args, "--json")...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	runErr := cmd.Run()
	var failure struct {
		Status  int    `json:"status"`
		Name    string `json:"name"`
		Message string `json:"message"`
	}
	if json.Unmarshal(stdout.Bytes(), &failure) == nil && failure.Status != 0 {
		return fmt.Errorf("sf %s: %s", args[0]+" "+args[1], oneLine(failure.Message))
	}
	if runErr != nil {
		var ee *exec.ExitError
		if errors.As(runErr, &ee) {
			return fmt.Errorf("sf %s %s failed (%s)", args[0], args[1], ee.ProcessState)
		}
		return fmt.Errorf("cannot run the Salesforce CLI (%s): %v; install it, or put it on PATH", o.env.SF, errors.Unwrap(runErr))
	}
	if err := json.Unmarshal(stdout.Bytes(), into); err != nil {
		return fmt.Errorf("sf %s %s: its JSON answer could not be read", args[0], args[1])
	}
	return nil
}

func (o *options) listSFOrgs(ctx context.Context) ([]sfOrg, error) {
	var list sfOrgList
	if err := o.runSF(ctx, &list, "org", "list"); err != nil {
		return nil, err
	}
	byUser := map[string]*sfOrg{}
	var order []string
	add := func(orgs []sfOrg, scratch, sandbox bool) {
		for _, s := range orgs {
			if s.Username == "" {
				continue
			}
			cur := byUser[s.Username]
			if cur == nil {
				c := s
				cur = &c
				byUser[s.Username] = cur
				order = append(order, s.Username)
			}
			cur.scratchList = cur.scratchList || scratch
			cur.sandboxList = cur.sandboxList || sandbox
			if cur.Alias == "" {
				cur.Alias = s.Alias
			}
		}
	}
	r := list.Result
	add(r.NonScratchOrgs, false, false)
	add(r.DevHubs, false, false)
	add(r.Sandboxes, false, true)
	add(r.Other, false, false)
	add(r.ScratchOrgs, true, false)
	out := make([]sfOrg, 0, len(order))
	for _, u := range order {
		out = append(out, *byUser[u])
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Alias+out[i].Username < out[j].Alias+out[j].Username })
	return out, nil
}

func (o *options) importFromSF(ctx context.Context, cmd *cobra.Command, aliases []string, dryRun bool, print *genericclioptions.PrintFlags) error {
	out := cmd.OutOrStdout()
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	all, err := o.listSFOrgs(ctx)
	if err != nil {
		return err
	}
	var picked []sfOrg
	if len(aliases) == 0 {
		for _, s := range all {
			if s.usable() {
				picked = append(picked, s)
			}
		}
	} else {
		for _, a := range aliases {
			found := false
			for _, s := range all {
				if s.Alias == a || s.Username == a {
					picked, found = append(picked, s), true
					break
				}
			}
			if !found {
				return fmt.Errorf("the Salesforce CLI knows no org with alias or username %q (see sf org list)", a)
			}
		}
	}
	if len(picked) == 0 {
		return errors.New("the Salesforce CLI has no connected org to import (see sf org list)")
	}
	if dryRun {
		printer, err := print.ToPrinter()
		if err != nil {
			return err
		}
		for _, s := range picked {
			name := objectName(firstNonEmpty(s.Alias, s.Username))
			obj, err := manifest(newOrg(ns, name, string(s.orgType()), name+"-auth"))
			if err != nil {
				return err
			}
			if err := printer.PrintObj(obj, out); err != nil {
				return err
			}
		}
		fmt.Fprintln(cmd.ErrOrStderr(), "The credentials are not in this output: run the import without --dry-run against the cluster to write the Secrets.")
		return nil
	}
	kc, err := o.client()
	if err != nil {
		return err
	}
	for _, s := range picked {
		name := objectName(firstNonEmpty(s.Alias, s.Username))
		var ans struct {
			Result struct {
				SfdxAuthURL string `json:"sfdxAuthUrl"`
			} `json:"result"`
		}
		if err := o.runSF(ctx, &ans, "org", "auth", "show-sfdx-auth-url", "--target-org", s.Username); err != nil {
			return err
		}
		a, err := salesforce.ParseAuthURL(ans.Result.SfdxAuthURL)
		if err != nil {
			return fmt.Errorf("the Salesforce CLI's auth URL for %s: %w", firstNonEmpty(s.Alias, s.Username), err)
		}
		org, found, err := getOrg(ctx, kc, ns, name)
		if err != nil {
			return err
		}
		secretName, key := name+"-auth", sfv1.DefaultAuthSecretKey
		if found {
			if org.Spec.AuthSecretRef.Name == "" {
				return fmt.Errorf("SalesforceOrg %s/%s exists and authenticates with %s: not importing %s into it", ns, name, credentialSourceOf(org), firstNonEmpty(s.Alias, s.Username))
			}
			secretName = org.Spec.AuthSecretRef.Name
			if org.Spec.AuthSecretRef.Key != "" {
				key = org.Spec.AuthSecretRef.Key
			}
		}
		created, err := writeAuthSecret(ctx, kc, ns, secretName, key, a)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "secret/%s %s\n", secretName, map[bool]string{true: "created", false: "configured"}[created])
		if found {
			if _, err := requestCheck(ctx, kc, org); err != nil {
				return err
			}
			fmt.Fprintf(out, "salesforceorg.salesforce.sfops.io/%s check requested\n", name)
			continue
		}
		if err := kc.Create(ctx, newOrg(ns, name, string(s.orgType()), secretName)); err != nil {
			return fmt.Errorf("creating SalesforceOrg %s/%s: %w", ns, name, apiError(err))
		}
		fmt.Fprintf(out, "salesforceorg.salesforce.sfops.io/%s created (%s)\n", name, s.orgType())
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
