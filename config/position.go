package config

import (
	"sort"
	"strconv"
	"strings"
)

// posIndex maps key paths to the line where the source sets them.
//
// BurntSushi/toml keeps key positions private, so the index comes from a
// small scanner of its own. The scanner knows just enough TOML to keep its
// place: comments, the four kinds of strings (a multi-line string or array
// must not be taken for keys), table and array-of-tables headers, dotted
// keys, arrays and inline tables. It never fails: on text it does not
// understand it skips to the end of the line, so a broken file still gives
// the lines of the keys before and after the break.
//
// Paths are written as errors name keys: dotted, with the index of each
// element of an array of tables or of an array ("vip[1].backend[0].address",
// "datapath.queues[2]"); see joinKey and indexKey.
type posIndex struct {
	lines   map[string]int
	entries []posEntry // in source order, for lineKey
	// deep is the line where the source first nests keys or values more
	// than maxDepth levels, or 0. xlb's schema nests three levels; the TOML
	// library takes time quadratic in the depth, so Parse refuses such a
	// file before decoding it.
	deep int
}

type posEntry struct {
	line int
	key  string
}

// maxDepth bounds the nesting of keys, arrays and inline tables: deeper
// input is refused (posIndex.deep), and the scanner does not recurse further.
const maxDepth = 32

// newPosIndex scans src. It never panics and always terminates.
func newPosIndex(src []byte) *posIndex {
	s := &scanner{
		src: src,
		idx: &posIndex{lines: make(map[string]int)},
		aot: make(map[string]int),
	}
	for i, c := range src {
		if c == '\n' {
			s.newlines = append(s.newlines, i)
		}
	}
	s.run()
	return s.idx
}

// line returns the line where key is set. A key the file does not set (a
// missing required key, a default found wrong) falls back to its nearest
// parent that the file does set, so "datapath.interface" points at the
// [datapath] header when the key is absent; the root is line 1.
func (x *posIndex) line(key string) int {
	if x == nil {
		return 0
	}
	for key != "" {
		if l, ok := x.lines[key]; ok {
			return l
		}
		key = parentKey(key)
	}
	return 1
}

// has reports whether the file sets key itself.
func (x *posIndex) has(key string) bool {
	if x == nil {
		return false
	}
	_, ok := x.lines[key]
	return ok
}

// lineKey returns the key being read at line: the last key set on that line,
// else the last key set before it. Syntax errors come with a line only; this
// names the key they are about.
func (x *posIndex) lineKey(line int) string {
	if x == nil {
		return ""
	}
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].line > line })
	if i == 0 {
		return ""
	}
	return x.entries[i-1].key
}

func (x *posIndex) set(key string, line int) {
	if _, ok := x.lines[key]; ok {
		return // a duplicate is a TOML error of its own; keep the first
	}
	x.lines[key] = line
	x.entries = append(x.entries, posEntry{line: line, key: key})
}

// parentKey strips the last element of a key path: "a.b[2]" -> "a.b",
// "a.b" -> "a", "a" -> "".
func parentKey(key string) string {
	if strings.HasSuffix(key, "]") {
		if i := strings.LastIndexByte(key, '['); i >= 0 {
			return key[:i]
		}
	}
	// The last dot outside quotes; a quoted segment may hold dots.
	inQuote, cut := false, -1
	for i := 0; i < len(key); i++ {
		switch key[i] {
		case '\\':
			if inQuote {
				i++
			}
		case '"':
			inQuote = !inQuote
		case '.':
			if !inQuote {
				cut = i
			}
		}
	}
	if cut < 0 {
		return ""
	}
	return key[:cut]
}

// joinKey appends one key segment to a path. A segment that is not a bare key
// is quoted, so a path reads back unambiguously.
func joinKey(parent, name string) string {
	if !isBareKey(name) {
		name = strconv.Quote(name)
	}
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// indexKey names element i of the array at path.
func indexKey(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBareChar(s[i]) {
			return false
		}
	}
	return true
}

func isBareChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

type scanner struct {
	src      []byte
	pos      int
	newlines []int // offsets of '\n', for lineAt
	idx      *posIndex
	table    string         // path of the table in effect
	aot      map[string]int // resolved array-of-tables path -> elements so far
}

// lineAt turns a byte offset into a 1-based line. Lines come from offsets,
// not from a counter, so that no path through the scanner can miscount them.
func (s *scanner) lineAt(off int) int {
	return 1 + sort.SearchInts(s.newlines, off)
}

func (s *scanner) peek(off int) byte {
	if s.pos+off < len(s.src) {
		return s.src[s.pos+off]
	}
	return 0
}

func (s *scanner) run() {
	for s.pos < len(s.src) {
		s.skipBlank()
		if s.pos >= len(s.src) {
			return
		}
		switch c := s.src[s.pos]; c {
		case '\n':
			s.pos++
		case '#':
			s.skipLine()
		case '[':
			s.header()
		default:
			s.keyValue(s.table)
		}
	}
}

// skipBlank skips spaces, tabs and carriage returns, not newlines.
func (s *scanner) skipBlank() {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
			s.pos++
		default:
			return
		}
	}
}

// skipSpace skips blanks, newlines and comments: the space between the
// elements of an array or (TOML 1.1) an inline table.
func (s *scanner) skipSpace() {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		case '#':
			s.skipLine()
		default:
			return
		}
	}
}

// skipLine moves to the next newline, leaving it to be read.
func (s *scanner) skipLine() {
	for s.pos < len(s.src) && s.src[s.pos] != '\n' {
		s.pos++
	}
}

// header reads "[a.b]" or "[[a.b]]" and makes it the table in effect.
func (s *scanner) header() {
	start := s.pos
	aot := s.peek(1) == '['
	if aot {
		s.pos += 2
	} else {
		s.pos++
	}
	segs := s.key()
	s.skipBlank()
	if len(segs) == 0 || s.peek(0) != ']' || aot && s.peek(1) != ']' {
		s.skipLine()
		return
	}
	if aot {
		s.pos += 2
	} else {
		s.pos++
	}
	path := ""
	for i, seg := range segs {
		path = joinKey(path, seg)
		n, isAOT := s.aot[path]
		switch {
		case aot && i == len(segs)-1:
			s.idx.set(path, s.lineAt(start)) // the array: its first element
			s.aot[path] = n + 1
			path = indexKey(path, n)
		case isAOT && n > 0:
			// [vip.backend] or [[vip.backend]] extend the last [[vip]].
			path = indexKey(path, n-1)
		}
	}
	s.table = path
	s.idx.set(path, s.lineAt(start))
	s.skipLine()
}

// keyValue reads "key = value" in the table at path. At the top level the
// rest of the line (a comment) is skipped; inside an inline table the caller
// reads on.
func (s *scanner) keyValue(table string) {
	start := s.pos
	segs := s.key()
	s.skipBlank()
	if len(segs) == 0 || s.peek(0) != '=' {
		s.skipLine()
		return
	}
	s.pos++
	line := s.lineAt(start)
	path := table
	for _, seg := range segs {
		path = joinKey(path, seg)
		s.idx.set(path, line) // a.b.c = 1 also defines a.b
	}
	s.skipBlank()
	s.value(path, 0)
	s.skipLine()
}

// key reads a dotted key of bare and quoted segments. It returns nil when no
// segment starts here.
func (s *scanner) key() []string {
	var segs []string
	for {
		s.skipBlank()
		seg, ok := s.keySegment()
		if !ok {
			return segs
		}
		segs = append(segs, seg)
		if !s.depthOK(len(segs)) {
			return segs
		}
		s.skipBlank()
		if s.peek(0) != '.' {
			return segs
		}
		s.pos++
	}
}

// depthOK reports whether depth is within maxDepth, noting the first line
// where it is not.
func (s *scanner) depthOK(depth int) bool {
	if depth < maxDepth {
		return true
	}
	if s.idx.deep == 0 {
		s.idx.deep = s.lineAt(s.pos)
	}
	return false
}

func (s *scanner) keySegment() (string, bool) {
	start := s.pos
	switch s.peek(0) {
	case '"':
		s.basicString()
		raw := string(s.src[start:s.pos])
		if v, err := strconv.Unquote(raw); err == nil {
			return v, true
		}
		return strings.Trim(raw, `"`), true // an escape Go lacks: best effort
	case '\'':
		s.literalString()
		return strings.Trim(string(s.src[start:s.pos]), "'"), true
	}
	for s.pos < len(s.src) && isBareChar(s.src[s.pos]) {
		s.pos++
	}
	return string(s.src[start:s.pos]), s.pos > start
}

// value skips one value, recording the line of each element of an array
// and of each key of an inline table. It may read past newlines only inside
// multi-line strings, arrays and inline tables.
func (s *scanner) value(path string, depth int) {
	switch s.peek(0) {
	case '"':
		if s.peek(1) == '"' && s.peek(2) == '"' {
			s.multiline('"')
		} else {
			s.basicString()
		}
	case '\'':
		if s.peek(1) == '\'' && s.peek(2) == '\'' {
			s.multiline('\'')
		} else {
			s.literalString()
		}
	case '[':
		if s.depthOK(depth) {
			s.array(path, depth)
		}
	case '{':
		if s.depthOK(depth) {
			s.inlineTable(path, depth)
		}
	default:
		// A number, boolean or date: up to what ends a value. Dates may
		// hold a space, so a blank does not end it.
		for s.pos < len(s.src) {
			switch s.src[s.pos] {
			case ',', ']', '}', '\n', '#':
				return
			}
			s.pos++
		}
	}
}

func (s *scanner) array(path string, depth int) {
	s.pos++ // [
	for n := 0; ; n++ {
		s.skipSpace()
		switch s.peek(0) {
		case ']':
			s.pos++
			return
		case 0, ',', '}':
			return // broken: let the caller skip the line
		}
		elem := indexKey(path, n)
		s.idx.set(elem, s.lineAt(s.pos))
		s.value(elem, depth+1)
		end := s.pos
		s.skipSpace()
		if s.peek(0) != ',' {
			if s.peek(0) == ']' {
				s.pos++
			} else {
				s.pos = end // broken: leave the next line to be read afresh
			}
			return
		}
		s.pos++
	}
}

func (s *scanner) inlineTable(path string, depth int) {
	s.pos++ // {
	for {
		s.skipSpace()
		switch s.peek(0) {
		case '}':
			s.pos++
			return
		case 0:
			return
		}
		start := s.pos
		segs := s.key()
		s.skipBlank()
		if len(segs) == 0 || s.peek(0) != '=' {
			return // broken: let the caller skip the line
		}
		s.pos++
		key := path
		for _, seg := range segs {
			key = joinKey(key, seg)
			s.idx.set(key, s.lineAt(start))
		}
		s.skipBlank()
		s.value(key, depth+1)
		end := s.pos
		s.skipSpace()
		if s.peek(0) != ',' {
			if s.peek(0) == '}' {
				s.pos++
			} else {
				s.pos = end // broken: leave the next line to be read afresh
			}
			return
		}
		s.pos++
	}
}

// basicString skips "..." with backslash escapes; it stops at the end of the
// line if the string is not closed there.
func (s *scanner) basicString() {
	s.pos++ // "
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case '\\':
			if s.peek(1) != '\n' {
				s.pos++
			}
		case '"':
			s.pos++
			return
		case '\n':
			return
		}
		s.pos++
	}
}

// literalString skips '...', which has no escapes.
func (s *scanner) literalString() {
	s.pos++ // '
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case '\'':
			s.pos++
			return
		case '\n':
			return
		}
		s.pos++
	}
}

// multiline skips a multi-line string, basic or literal; q is its quote
// character. Up to two more quotes right before the closing three belong to
// the string.
func (s *scanner) multiline(q byte) {
	s.pos += 3
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		if c == '\\' && q == '"' {
			s.pos += 2
			continue
		}
		if c == q && s.peek(1) == q && s.peek(2) == q {
			s.pos += 3
			for i := 0; i < 2 && s.peek(0) == q; i++ {
				s.pos++
			}
			return
		}
		s.pos++
	}
	s.pos = len(s.src)
}
