package sftest

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// The SOQL the fake understands: SELECT f, ... FROM Object [WHERE cond] [ORDER BY f [ASC|DESC]
// [NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n], where cond combines `field op literal`
// (op one of = != <> < <= > >= LIKE, IN (...), NOT IN (...)) with AND, OR, NOT and parentheses,
// and a literal is a 'string', a number, true, false or null. Anything else is MALFORMED_QUERY,
// as Salesforce answers; an unknown field is INVALID_FIELD, an unknown object INVALID_TYPE.

type soqlQuery struct {
	fields  []string
	object  string
	where   soqlCond // nil: every record
	orderBy []soqlOrder
	limit   int // -1: none
	offset  int
}

type soqlOrder struct {
	field      string
	desc       bool
	nullsFirst bool
}

// soqlCond is a WHERE clause: it reports whether a record matches, or the field it names that
// the record lacks.
type soqlCond func(rec obj) (bool, string)

type soqlError struct{ code, msg string }

func (e *soqlError) Error() string { return e.code + ": " + e.msg }

func malformed(tok string) *soqlError {
	if tok == "" {
		return &soqlError{"MALFORMED_QUERY", "unexpected end of query"}
	}
	return &soqlError{"MALFORMED_QUERY", "unexpected token: '" + tok + "'"}
}

type soqlTok struct {
	text string
	str  bool // a quoted string literal (text unquoted)
}

func soqlTokens(q string) ([]soqlTok, error) {
	var toks []soqlTok
	rs := []rune(q)
	for i := 0; i < len(rs); {
		c := rs[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '\'':
			var b strings.Builder
			i++
			for ; i < len(rs) && rs[i] != '\''; i++ {
				if rs[i] == '\\' && i+1 < len(rs) {
					i++
				}
				b.WriteRune(rs[i])
			}
			if i == len(rs) {
				return nil, malformed("'" + b.String())
			}
			i++
			toks = append(toks, soqlTok{text: b.String(), str: true})
		case strings.ContainsRune("(),", c):
			toks = append(toks, soqlTok{text: string(c)})
			i++
		case strings.ContainsRune("=<>!", c):
			j := i + 1
			if j < len(rs) && (rs[j] == '=' || c == '<' && rs[j] == '>') {
				j++
			}
			toks = append(toks, soqlTok{text: string(rs[i:j])})
			i = j
		case unicode.IsLetter(c) || unicode.IsDigit(c) || c == '_' || c == '.' || c == '-' || c == ':':
			j := i
			for j < len(rs) && (unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j]) || strings.ContainsRune("_.-:+", rs[j])) {
				j++
			}
			toks = append(toks, soqlTok{text: string(rs[i:j])})
			i = j
		default:
			return nil, malformed(string(c))
		}
	}
	return toks, nil
}

type soqlParser struct {
	toks []soqlTok
	pos  int
}

func (p *soqlParser) peek() string {
	if p.pos >= len(p.toks) {
		return ""
	}
	return p.toks[p.pos].text
}

// keyword reports whether the next token is the (unquoted) keyword kw, and consumes it if so.
func (p *soqlParser) keyword(kw string) bool {
	if p.pos < len(p.toks) && !p.toks[p.pos].str && strings.EqualFold(p.toks[p.pos].text, kw) {
		p.pos++
		return true
	}
	return false
}

func (p *soqlParser) ident() (string, error) {
	if p.pos >= len(p.toks) || p.toks[p.pos].str || !isIdent(p.toks[p.pos].text) {
		return "", malformed(p.peek())
	}
	p.pos++
	return p.toks[p.pos-1].text, nil
}

func isIdent(s string) bool {
	if s == "" || !unicode.IsLetter([]rune(s)[0]) {
		return false
	}
	for _, kw := range []string{"select", "from", "where", "and", "or", "not", "order", "by", "limit", "offset", "in", "like", "asc", "desc", "nulls"} {
		if strings.EqualFold(s, kw) {
			return false
		}
	}
	return true
}

func parseSOQL(q string) (*soqlQuery, error) {
	toks, err := soqlTokens(q)
	if err != nil {
		return nil, err
	}
	p := &soqlParser{toks: toks}
	if !p.keyword("SELECT") {
		return nil, malformed(p.peek())
	}
	sq := &soqlQuery{limit: -1}
	for {
		f, err := p.ident()
		if err != nil {
			return nil, err
		}
		sq.fields = append(sq.fields, f)
		if p.peek() != "," {
			break
		}
		p.pos++
	}
	if !p.keyword("FROM") {
		return nil, malformed(p.peek())
	}
	if sq.object, err = p.ident(); err != nil {
		return nil, err
	}
	if p.keyword("WHERE") {
		if sq.where, err = p.or(); err != nil {
			return nil, err
		}
	}
	if p.keyword("ORDER") {
		if !p.keyword("BY") {
			return nil, malformed(p.peek())
		}
		for {
			f, err := p.ident()
			if err != nil {
				return nil, err
			}
			o := soqlOrder{field: f}
			if p.keyword("DESC") {
				o.desc = true
			} else {
				p.keyword("ASC")
			}
			o.nullsFirst = !o.desc // Salesforce's default: nulls first ascending, last descending
			if p.keyword("NULLS") {
				switch {
				case p.keyword("FIRST"):
					o.nullsFirst = true
				case p.keyword("LAST"):
					o.nullsFirst = false
				default:
					return nil, malformed(p.peek())
				}
			}
			sq.orderBy = append(sq.orderBy, o)
			if p.peek() != "," {
				break
			}
			p.pos++
		}
	}
	for _, clause := range []struct {
		kw string
		to *int
	}{{"LIMIT", &sq.limit}, {"OFFSET", &sq.offset}} {
		if p.keyword(clause.kw) {
			n, err := strconv.Atoi(p.peek())
			if err != nil || n < 0 {
				return nil, malformed(p.peek())
			}
			*clause.to = n
			p.pos++
		}
	}
	if p.pos != len(p.toks) {
		return nil, malformed(p.peek())
	}
	return sq, nil
}

func (p *soqlParser) or() (soqlCond, error) { return p.chain("OR", p.and, true) }

func (p *soqlParser) and() (soqlCond, error) { return p.chain("AND", p.not, false) }

// chain parses operands joined by the keyword kw, evaluated left to right until one answers
// decisive (true for OR, false for AND) or names a missing field.
func (p *soqlParser) chain(kw string, operand func() (soqlCond, error), decisive bool) (soqlCond, error) {
	left, err := operand()
	if err != nil {
		return nil, err
	}
	for p.keyword(kw) {
		right, err := operand()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(rec obj) (bool, string) {
			if ok, bad := l(rec); ok == decisive || bad != "" {
				return ok, bad
			}
			return right(rec)
		}
	}
	return left, nil
}

func (p *soqlParser) not() (soqlCond, error) {
	if p.keyword("NOT") {
		inner, err := p.not()
		if err != nil {
			return nil, err
		}
		return func(rec obj) (bool, string) {
			ok, bad := inner(rec)
			return !ok, bad
		}, nil
	}
	if p.peek() == "(" && !p.toks[p.pos].str {
		p.pos++
		c, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, malformed(p.peek())
		}
		p.pos++
		return c, nil
	}
	return p.comparison()
}

func (p *soqlParser) literal() (any, error) {
	if p.pos >= len(p.toks) {
		return nil, malformed("")
	}
	t := p.toks[p.pos]
	p.pos++
	switch {
	case t.str:
		return t.text, nil
	case strings.EqualFold(t.text, "null"):
		return nil, nil
	case strings.EqualFold(t.text, "true"):
		return true, nil
	case strings.EqualFold(t.text, "false"):
		return false, nil
	}
	if n, err := strconv.ParseFloat(t.text, 64); err == nil {
		return n, nil
	}
	if len(t.text) >= 10 && t.text[4] == '-' && t.text[7] == '-' { // a date or datetime literal
		return t.text, nil
	}
	return nil, malformed(t.text)
}

func (p *soqlParser) comparison() (soqlCond, error) {
	field, err := p.ident()
	if err != nil {
		return nil, err
	}
	negate := p.keyword("NOT")
	var op string
	var values []any
	switch {
	case p.keyword("IN"):
		op = "IN"
		if p.peek() != "(" {
			return nil, malformed(p.peek())
		}
		p.pos++
		for {
			v, err := p.literal()
			if err != nil {
				return nil, err
			}
			values = append(values, v)
			if p.peek() != "," {
				break
			}
			p.pos++
		}
		if p.peek() != ")" {
			return nil, malformed(p.peek())
		}
		p.pos++
	case negate:
		return nil, malformed(p.peek())
	case p.keyword("LIKE"):
		op = "LIKE"
		v, err := p.literal()
		if err != nil {
			return nil, err
		}
		if _, ok := v.(string); !ok {
			return nil, malformed(fmt.Sprint(v))
		}
		values = []any{v}
	default:
		op = p.peek()
		switch op {
		case "=", "!=", "<>", "<", "<=", ">", ">=":
			p.pos++
		default:
			return nil, malformed(op)
		}
		v, err := p.literal()
		if err != nil {
			return nil, err
		}
		values = []any{v}
	}
	return func(rec obj) (bool, string) {
		_, got, ok := lookupField(rec, field)
		if !ok {
			return false, field
		}
		switch op {
		case "IN":
			for _, v := range values {
				if soqlCompare(got, v) == 0 {
					return !negate, ""
				}
			}
			return negate, ""
		case "LIKE":
			s, _ := got.(string)
			return got != nil && likeMatch(strings.ToLower(values[0].(string)), strings.ToLower(s)), ""
		}
		c := soqlCompare(got, values[0])
		switch op {
		case "=":
			return c == 0, ""
		case "!=", "<>":
			return c != 0, ""
		}
		if got == nil || values[0] == nil {
			return false, ""
		}
		switch op {
		case "<":
			return c < 0, ""
		case "<=":
			return c <= 0, ""
		case ">":
			return c > 0, ""
		}
		return c >= 0, ""
	}, nil
}

// soqlCompare orders two field values: null first, strings case-insensitively, as SOQL does.
func soqlCompare(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	num := func(v any) (float64, bool) {
		switch n := v.(type) {
		case int:
			return float64(n), true
		case int64:
			return float64(n), true
		case float64:
			return n, true
		}
		return 0, false
	}
	if x, ok := num(a); ok {
		if y, ok := num(b); ok {
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		}
	}
	if x, ok := a.(bool); ok {
		if y, ok := b.(bool); ok {
			switch {
			case x == y:
				return 0
			case !x:
				return -1
			}
			return 1
		}
	}
	return strings.Compare(strings.ToLower(fmt.Sprint(a)), strings.ToLower(fmt.Sprint(b)))
}

// likeMatch matches SOQL's LIKE: % is any run of characters, _ one character.
func likeMatch(pattern, s string) bool {
	if pattern == "" {
		return s == ""
	}
	switch pattern[0] {
	case '%':
		for i := 0; i <= len(s); i++ {
			if likeMatch(pattern[1:], s[i:]) {
				return true
			}
		}
		return false
	case '_':
		return s != "" && likeMatch(pattern[1:], s[1:])
	}
	return s != "" && s[0] == pattern[0] && likeMatch(pattern[1:], s[1:])
}

// sobject is what the fake knows of one queryable object: its fields in order with their Apex
// types, its key prefix, and its records for an org.
type sobject struct {
	name      string
	keyPrefix string
	fields    []sfield
	records   func(s *Server, o *Org) []obj
}

type sfield struct{ name, apexType string }

func (so *sobject) field(name string) (sfield, bool) {
	for _, f := range so.fields {
		if strings.EqualFold(f.name, name) {
			return f, true
		}
	}
	return sfield{}, false
}

// runQueryLocked answers a query (columns: the column metadata instead of records) over the
// objects the API serves.
func (s *Server) runQueryLocked(o *Org, version, q string, columns bool, objects []*sobject) reply {
	if q == "" {
		return restErrorReply(http.StatusBadRequest, "MALFORMED_QUERY", "A query string has to be specified")
	}
	sq, err := parseSOQL(q)
	if err != nil {
		e := err.(*soqlError)
		return restErrorReply(http.StatusBadRequest, e.code, e.msg)
	}
	var so *sobject
	for _, c := range objects {
		if strings.EqualFold(c.name, sq.object) {
			so = c
		}
	}
	if so == nil {
		return restErrorReply(http.StatusBadRequest, "INVALID_TYPE", fmt.Sprintf(sobjectNotSupported, sq.object))
	}
	if so.name == "ScratchOrgInfo" && !o.spec.DevHub {
		return restErrorReply(http.StatusBadRequest, "INVALID_TYPE", fmt.Sprintf(sobjectNotSupported, sq.object))
	}
	var named []string
	named = append(named, sq.fields...)
	for _, ob := range sq.orderBy {
		named = append(named, ob.field)
	}
	for _, f := range named {
		if _, ok := so.field(f); !ok {
			return invalidField(f, so.name)
		}
	}
	if columns {
		return columnsReply(so, sq.fields)
	}
	var rows []obj
	for _, rec := range so.records(s, o) {
		if sq.where != nil {
			ok, bad := sq.where(rec)
			if bad != "" {
				return invalidField(bad, so.name)
			}
			if !ok {
				continue
			}
		}
		rows = append(rows, rec)
	}
	if sq.where != nil && len(rows) == 0 {
		// Check the WHERE fields even when no record was there to check them against.
		if _, bad := sq.where(emptyRecord(so)); bad != "" {
			return invalidField(bad, so.name)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		for _, ob := range sq.orderBy {
			_, a, _ := lookupField(rows[i], ob.field)
			_, b, _ := lookupField(rows[j], ob.field)
			if (a == nil) != (b == nil) {
				return (a == nil) == ob.nullsFirst
			}
			c := soqlCompare(a, b)
			if ob.desc {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return false
	})
	rows = rows[min(sq.offset, len(rows)):]
	if sq.limit >= 0 && len(rows) > sq.limit {
		rows = rows[:sq.limit]
	}
	out := []obj{}
	for _, rec := range rows {
		_, id, _ := lookupField(rec, "Id")
		row := obj{{"attributes", obj{{"type", so.name}, {"url", fmt.Sprintf("/services/data/v%s/sobjects/%s/%v", version, so.name, id)}}}}
		for _, f := range sq.fields {
			name, v, _ := lookupField(rec, f)
			row = append(row, kv{name, v})
		}
		out = append(out, row)
	}
	return jsonReply(http.StatusOK, obj{{"totalSize", len(out)}, {"done", true}, {"records", out}})
}

func invalidField(field, object string) reply {
	return restErrorReply(http.StatusBadRequest, "INVALID_FIELD", fmt.Sprintf("No such column '%s' on entity '%s'. "+
		"If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. "+
		"Please reference your WSDL or the describe call for the appropriate names.", field, object))
}

func emptyRecord(so *sobject) obj {
	rec := obj{}
	for _, f := range so.fields {
		rec = append(rec, kv{f.name, nil})
	}
	return rec
}

// columnsReply is the answer to query?columns=true: the query's column metadata, which the
// Salesforce CLI asks for after every query that returned records.
func columnsReply(so *sobject, fields []string) reply {
	cols := []obj{}
	idSelected := false
	for _, name := range fields {
		f, _ := so.field(name)
		idSelected = idSelected || f.name == "Id"
		cols = append(cols, obj{
			{"aggregate", false},
			{"apexType", f.apexType},
			{"booleanType", f.apexType == "Boolean"},
			{"columnName", f.name},
			{"custom", strings.HasSuffix(f.name, "__c")},
			{"displayName", f.name},
			{"foreignKeyName", nil},
			{"insertable", false},
			{"joinColumns", []obj{}},
			{"numberType", f.apexType == "Integer" || f.apexType == "Double"},
			{"textType", f.apexType == "String"},
			{"updatable", false},
		})
	}
	return jsonReply(http.StatusOK, obj{
		{"columnMetadata", cols},
		{"entityName", so.name},
		{"groupBy", false},
		{"idSelected", idSelected},
		{"keyPrefix", nilIfEmpty(so.keyPrefix)},
	})
}

// restObjects are the objects the REST query resource serves.
var restObjects = []*sobject{
	{
		name: "Organization", keyPrefix: "00D",
		fields: []sfield{{"Id", "Id"}, {"Name", "String"}, {"InstanceName", "String"}, {"IsSandbox", "Boolean"},
			{"TrialExpirationDate", "Datetime"}, {"NamespacePrefix", "String"}, {"OrganizationType", "String"},
			{"LanguageLocaleKey", "String"}, {"CreatedDate", "Datetime"}},
		records: func(s *Server, o *Org) []obj { return []obj{s.organizationRecordLocked(o)} },
	},
	{
		// A DevHub's scratch orgs. The fake tracks none: queries succeed with no records.
		name: "ScratchOrgInfo", keyPrefix: "2SR",
		fields: []sfield{{"Id", "Id"}, {"ScratchOrg", "String"}, {"SignupUsername", "String"}, {"OrgName", "String"},
			{"ExpirationDate", "Date"}, {"Status", "String"}, {"LoginUrl", "String"}, {"CreatedDate", "Datetime"}},
		records: func(*Server, *Org) []obj { return nil },
	},
}

// toolingObjects are the objects the Tooling API's query resource serves.
var toolingObjects = []*sobject{
	{
		name: "SandboxProcess", keyPrefix: "0GR",
		fields: []sfield{{"Id", "Id"}, {"Status", "String"}, {"SandboxName", "String"}, {"SandboxInfoId", "Id"},
			{"LicenseType", "String"}, {"CreatedDate", "Datetime"}, {"CopyProgress", "Integer"},
			{"SandboxOrganization", "String"}, {"SourceId", "Id"}, {"Description", "String"}, {"EndDate", "Datetime"},
			{"Features", "String"}},
		records: func(s *Server, o *Org) []obj { return s.sandboxProcessesLocked(o) },
	},
	{
		// Whether the org's Developer sandboxes track source: the CLI asks after authorizing a
		// sandbox. Off, as by default.
		name:   "SourceTrackingSettings",
		fields: []sfield{{"Id", "Id"}, {"DurableId", "String"}, {"IsSourceTrackingSandboxesEnabled", "Boolean"}},
		records: func(_ *Server, o *Org) []obj {
			return []obj{{{"Id", "000000000000000AAA"}, {"DurableId", o.orgID[:15]}, {"IsSourceTrackingSandboxesEnabled", false}}}
		},
	},
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
