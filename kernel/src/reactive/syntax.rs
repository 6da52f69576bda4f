//! What one cell defines and uses, parsed with `syn`.
//!
//! The names a cell defines at its top level (`let` patterns and items) and the names it refers
//! to anywhere (paths, and identifiers inside macro calls and their inline format arguments),
//! which widget constructors it calls, and what the kernel needs to know to wrap the cell into
//! a function (`crate::reactive::wrap`): whether it declares items, runs evcxr commands or can leave early
//! with `?`, and its statements and final expression as code.
//!
//! Names used inside items (`fn`, `impl`, `struct`, …) are kept apart: an item cannot capture a
//! variable (Rust refuses it), so they can only refer to other items. Elsewhere the analysis
//! follows Rust's scopes where they are plain: a name bound inside a nested block (`let`), by a
//! closure's parameters, a `for` pattern, a `match` arm or an `if let`/`while let` is local from
//! there to the end of its scope, so its uses there are not uses of a notebook variable; where
//! the form is not one of these (a let-chain, a macro that is not a list of expressions) the
//! analysis errs on the side of rerunning and counts the name.

use std::collections::BTreeSet;

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::visit::Visit;

/// What one cell defines and uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellSyntax {
    /// Names bound at the cell's top level: `let` patterns, `fn`, `struct`, `use`, ….
    pub defines: BTreeSet<String>,
    /// Names bound by items (`fn`, `struct`, `use`, …), a part of `defines`.
    pub item_defines: BTreeSet<String>,
    /// Names used in the cell outside items.
    pub references: BTreeSet<String>,
    /// Names used inside items: they can refer only to items, never to variables.
    pub item_references: BTreeSet<String>,
    /// For each widget model the cell creates, in creation order, the names its statement
    /// binds (empty for a widget that is only displayed).
    pub widget_bindings: Vec<BTreeSet<String>>,
    /// Variables the cell changes in place at its top level (outside items): targets of `=`
    /// and `+=`-style assignments (`x = …`, `x.f += …`, `x[i] = …`) and of `&mut x`, by their
    /// root name.
    pub assigns: BTreeSet<String>,
    /// The names of `references` that the cell uses before (or without) binding them itself
    /// at its top level: what it reads from other cells (`let x = x + 1;` reads `x`; a cell
    /// that pushes to its own `let mut rows` does not).
    pub free_references: BTreeSet<String>,
    /// Whether the cell parsed; if not, `references` holds every identifier.
    pub parsed: bool,
    /// Top-level items (`fn`, `struct`, `use`, `impl`, …), by kind: evcxr keeps them for every
    /// later cell, so such a cell is never wrapped.
    pub items: Vec<&'static str>,
    /// Whether the cell has evcxr `:commands` lines.
    pub commands: bool,
    /// A top-level `?` or `.await` (outside closures, async blocks and items), which returns
    /// from evcxr's cell function early.
    pub early_exit: Option<&'static str>,
    /// The statements before the final expression, as code (only for a cell that parsed).
    pub body: String,
    /// The final expression, shown as the cell's result, as code; `None` when the cell ends
    /// with a statement.
    pub tail: Option<String>,
}

/// Parses a cell. evcxr's `:commands` lines are skipped.
pub fn analyze(code: &str) -> CellSyntax {
    let commands = code.lines().any(|l| l.trim_start().starts_with(':'));
    let rust: String = code
        .lines()
        .map(|l| {
            if l.trim_start().starts_with(':') {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    match syn::parse_str::<syn::Block>(&format!("{{\n{rust}\n}}")) {
        Ok(block) => {
            let mut out = CellSyntax {
                parsed: true,
                commands,
                ..Default::default()
            };
            let last = block.stmts.len().saturating_sub(1);
            for (i, stmt) in block.stmts.iter().enumerate() {
                match stmt {
                    syn::Stmt::Expr(expr, None) if i == last => {
                        out.tail = Some(expr.to_token_stream().to_string());
                    }
                    _ => {
                        out.body.push_str(&stmt.to_token_stream().to_string());
                        out.body.push('\n');
                    }
                }
                if let syn::Stmt::Item(item) = stmt {
                    out.items.push(item_kind(item));
                }
                if out.early_exit.is_none() {
                    let mut exits = EarlyExit::default();
                    exits.visit_stmt(stmt);
                    out.early_exit = exits.found;
                }
                let mut uses = Uses::default();
                let mut bound = BTreeSet::new();
                match stmt {
                    syn::Stmt::Local(local) => {
                        pattern_names(&local.pat, &mut bound);
                        if let Some(init) = &local.init {
                            uses.visit_expr(&init.expr);
                            if let Some((_, diverge)) = &init.diverge {
                                uses.visit_expr(diverge);
                            }
                        }
                    }
                    syn::Stmt::Item(item) => {
                        item_names(item, &mut bound);
                        out.item_defines.extend(bound.iter().cloned());
                        uses.visit_item(item);
                    }
                    syn::Stmt::Expr(expr, _) => uses.visit_expr(expr),
                    syn::Stmt::Macro(m) => uses.visit_macro(&m.mac),
                }
                for _ in 0..uses.widgets {
                    out.widget_bindings.push(bound.clone());
                }
                let free = uses.names.iter().filter(|n| !out.defines.contains(*n));
                out.free_references.extend(free.cloned());
                out.defines.extend(bound);
                out.references.extend(uses.names);
                out.item_references.extend(uses.in_items);
                out.assigns.extend(uses.assigns);
            }
            out
        }
        Err(_) => {
            let mut names = BTreeSet::new();
            if let Ok(tokens) = rust.parse::<TokenStream>() {
                token_names(tokens, &mut names);
            }
            CellSyntax {
                references: names,
                commands,
                ..Default::default()
            }
        }
    }
}

impl CellSyntax {
    /// Why the kernel cannot wrap this cell into a function, if it cannot.
    pub fn wrap_obstacle(&self) -> Option<String> {
        if !self.parsed {
            return Some("it does not parse".into());
        }
        if self.commands {
            return Some("it runs evcxr commands (`:…`)".into());
        }
        if let Some(kind) = self.items.first() {
            return Some(format!(
                "it declares items (`{kind}`), which evcxr keeps for later cells"
            ));
        }
        if let Some(what) = self.early_exit {
            return Some(format!("it uses `{what}` at its top level"));
        }
        None
    }
}

fn item_kind(item: &syn::Item) -> &'static str {
    match item {
        syn::Item::Const(_) => "const",
        syn::Item::Enum(_) => "enum",
        syn::Item::ExternCrate(_) => "extern crate",
        syn::Item::Fn(_) => "fn",
        syn::Item::ForeignMod(_) => "extern",
        syn::Item::Impl(_) => "impl",
        syn::Item::Macro(_) => "macro_rules!",
        syn::Item::Mod(_) => "mod",
        syn::Item::Static(_) => "static",
        syn::Item::Struct(_) => "struct",
        syn::Item::Trait(_) | syn::Item::TraitAlias(_) => "trait",
        syn::Item::Type(_) => "type",
        syn::Item::Union(_) => "union",
        syn::Item::Use(_) => "use",
        _ => "item",
    }
}

/// Finds a `?` or `.await` that would leave the cell's own function.
#[derive(Default)]
struct EarlyExit {
    found: Option<&'static str>,
}

impl<'ast> Visit<'ast> for EarlyExit {
    fn visit_expr_try(&mut self, e: &'ast syn::ExprTry) {
        self.found.get_or_insert("?");
        syn::visit::visit_expr_try(self, e);
    }
    fn visit_expr_await(&mut self, e: &'ast syn::ExprAwait) {
        self.found.get_or_insert(".await");
        syn::visit::visit_expr_await(self, e);
    }
    fn visit_expr_return(&mut self, e: &'ast syn::ExprReturn) {
        self.found.get_or_insert("return");
        syn::visit::visit_expr_return(self, e);
    }
    // Inside these, `?`, `.await` and `return` leave only the closure, block or item.
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
    fn visit_expr_try_block(&mut self, _: &'ast syn::ExprTryBlock) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

fn pattern_names(pat: &syn::Pat, out: &mut BTreeSet<String>) {
    struct Binds<'a>(&'a mut BTreeSet<String>);
    impl<'ast> Visit<'ast> for Binds<'_> {
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.0.insert(p.ident.to_string());
            syn::visit::visit_pat_ident(self, p);
        }
        // Paths in patterns (enum variants, constants) are not bindings.
        fn visit_path(&mut self, _: &'ast syn::Path) {}
    }
    Binds(out).visit_pat(pat);
}

/// The variable a place expression starts from: `x` in `x`, `x.f`, `x[i]`, `(x)`, `*x`.
fn root_name(expr: &syn::Expr) -> Option<String> {
    match expr {
        syn::Expr::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            Some(p.path.segments[0].ident.to_string())
        }
        syn::Expr::Field(f) => root_name(&f.base),
        syn::Expr::Index(i) => root_name(&i.expr),
        syn::Expr::Paren(p) => root_name(&p.expr),
        syn::Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => root_name(&u.expr),
        _ => None,
    }
}

fn is_compound_assignment(op: &syn::BinOp) -> bool {
    use syn::BinOp::*;
    matches!(
        op,
        AddAssign(_)
            | SubAssign(_)
            | MulAssign(_)
            | DivAssign(_)
            | RemAssign(_)
            | BitXorAssign(_)
            | BitAndAssign(_)
            | BitOrAssign(_)
            | ShlAssign(_)
            | ShrAssign(_)
    )
}

fn item_names(item: &syn::Item, out: &mut BTreeSet<String>) {
    let ident = match item {
        syn::Item::Const(i) => Some(&i.ident),
        syn::Item::Enum(i) => Some(&i.ident),
        syn::Item::Fn(i) => Some(&i.sig.ident),
        syn::Item::Macro(i) => i.ident.as_ref(),
        syn::Item::Mod(i) => Some(&i.ident),
        syn::Item::Static(i) => Some(&i.ident),
        syn::Item::Struct(i) => Some(&i.ident),
        syn::Item::Trait(i) => Some(&i.ident),
        syn::Item::Type(i) => Some(&i.ident),
        syn::Item::Union(i) => Some(&i.ident),
        syn::Item::Use(u) => {
            use_names(&u.tree, out);
            None
        }
        _ => None,
    };
    if let Some(ident) = ident {
        out.insert(ident.to_string());
    }
}

fn use_names(tree: &syn::UseTree, out: &mut BTreeSet<String>) {
    match tree {
        syn::UseTree::Path(p) => use_names(&p.tree, out),
        syn::UseTree::Name(n) if n.ident != "self" => {
            out.insert(n.ident.to_string());
        }
        syn::UseTree::Rename(r) => {
            out.insert(r.rename.to_string());
        }
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| use_names(t, out)),
        _ => {}
    }
}

/// Collects used names (apart inside items) and counts widget constructor calls.
#[derive(Default)]
struct Uses {
    names: BTreeSet<String>,
    in_items: BTreeSet<String>,
    /// Items entered and not yet left.
    depth: usize,
    widgets: usize,
    assigns: BTreeSet<String>,
    /// Names bound in the nested scopes entered and not yet left, innermost last.
    locals: Vec<BTreeSet<String>>,
}

impl Uses {
    fn local(&self, name: &str) -> bool {
        self.locals.iter().any(|scope| scope.contains(name))
    }

    fn insert(&mut self, name: String) {
        if self.local(&name) {
            return;
        }
        if self.depth > 0 {
            self.in_items.insert(name);
        } else {
            self.names.insert(name);
        }
    }
}

impl<'ast> Visit<'ast> for Uses {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        self.depth += 1;
        syn::visit::visit_item(self, item);
        self.depth -= 1;
    }

    fn visit_expr_assign(&mut self, e: &'ast syn::ExprAssign) {
        if self.depth == 0 {
            self.assign(&e.left);
        }
        syn::visit::visit_expr_assign(self, e);
    }

    fn visit_expr_binary(&mut self, e: &'ast syn::ExprBinary) {
        if self.depth == 0 && is_compound_assignment(&e.op) {
            self.assign(&e.left);
        }
        syn::visit::visit_expr_binary(self, e);
    }

    fn visit_expr_reference(&mut self, e: &'ast syn::ExprReference) {
        if self.depth == 0 && e.mutability.is_some() {
            self.assign(&e.expr);
        }
        syn::visit::visit_expr_reference(self, e);
    }

    // Scopes: what a nested block, closure, loop, arm or `if let` binds is local to it.
    fn visit_block(&mut self, block: &'ast syn::Block) {
        self.locals.push(BTreeSet::new());
        for stmt in &block.stmts {
            match stmt {
                syn::Stmt::Local(local) => {
                    // The initializer is evaluated before the pattern binds.
                    if let Some(init) = &local.init {
                        self.visit_expr(&init.expr);
                        if let Some((_, diverge)) = &init.diverge {
                            self.visit_expr(diverge);
                        }
                    }
                    // Paths and types in the pattern are uses (an enum, a const, a struct).
                    self.visit_pat(&local.pat);
                    let mut bound = BTreeSet::new();
                    pattern_names(&local.pat, &mut bound);
                    self.locals.last_mut().expect("pushed").extend(bound);
                }
                other => self.visit_stmt(other),
            }
        }
        self.locals.pop();
    }

    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        let mut bound = BTreeSet::new();
        for input in &c.inputs {
            self.visit_pat(input);
            pattern_names(input, &mut bound);
        }
        self.scoped(bound, |v| v.visit_expr(&c.body));
    }

    fn visit_expr_for_loop(&mut self, f: &'ast syn::ExprForLoop) {
        self.visit_expr(&f.expr);
        self.visit_pat(&f.pat);
        let mut bound = BTreeSet::new();
        pattern_names(&f.pat, &mut bound);
        self.scoped(bound, |v| v.visit_block(&f.body));
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        self.visit_pat(&arm.pat);
        let mut bound = BTreeSet::new();
        pattern_names(&arm.pat, &mut bound);
        self.scoped(bound, |v| {
            if let Some((_, guard)) = &arm.guard {
                v.visit_expr(guard);
            }
            v.visit_expr(&arm.body);
        });
    }

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        match &*e.cond {
            syn::Expr::Let(l) => {
                self.let_scoped(l, &e.then_branch);
                if let Some((_, other)) = &e.else_branch {
                    self.visit_expr(other);
                }
            }
            _ => syn::visit::visit_expr_if(self, e),
        }
    }

    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        match &*e.cond {
            syn::Expr::Let(l) => self.let_scoped(l, &e.body),
            _ => syn::visit::visit_expr_while(self, e),
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            if let Some(first) = path.segments.first() {
                self.insert(first.ident.to_string());
            }
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        // Arguments are evaluated (and their widgets created) before the call itself.
        syn::visit::visit_expr_call(self, call);
        if self.depth > 0 {
            return; // a function body's widgets are made when it is called
        }
        if let syn::Expr::Path(p) = &*call.func {
            if let Some(last) = p.path.segments.last() {
                // The prelude's widget constructors, from its declaration of widget kinds.
                let made = qplay::widgets::kinds::constructors().find(|(c, _)| last.ident == c);
                if let Some((_, n)) = made {
                    self.widgets += n;
                }
            }
        }
    }

    /// A macro whose arguments are expressions (`println!`, `format!`, `assert_eq!`, …) is
    /// read like a call, so that method names inside it (`v.reset()`) are not taken for
    /// notebook variables; other macros count every identifier they contain.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        syn::visit::visit_macro(self, mac);
        let args = mac.parse_body_with(Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated);
        match args {
            Ok(args) => {
                for arg in &args {
                    match arg {
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(s),
                            ..
                        }) => {
                            let mut found = BTreeSet::new();
                            format_arguments(&s.token().to_string(), &mut found);
                            found.into_iter().for_each(|n| self.insert(n));
                        }
                        other => self.visit_expr(other),
                    }
                }
            }
            Err(_) => {
                let mut found = BTreeSet::new();
                token_names(mac.tokens.clone(), &mut found);
                found.into_iter().for_each(|n| self.insert(n));
            }
        }
    }
}

impl Uses {
    /// Visits what `f` visits with the names `bound` local to it.
    fn scoped(&mut self, bound: BTreeSet<String>, f: impl FnOnce(&mut Uses)) {
        self.locals.push(bound);
        f(self);
        self.locals.pop();
    }

    /// `if let` / `while let`: the scrutinee, then `body` with the pattern's names local.
    fn let_scoped<'ast>(&mut self, l: &'ast syn::ExprLet, body: &'ast syn::Block) {
        self.visit_expr(&l.expr);
        self.visit_pat(&l.pat);
        let mut bound = BTreeSet::new();
        pattern_names(&l.pat, &mut bound);
        self.scoped(bound, |v| v.visit_block(body));
    }

    /// An assignment's target, unless it is a local of a nested scope.
    fn assign(&mut self, target: &syn::Expr) {
        if let Some(name) = root_name(target).filter(|n| !self.local(n)) {
            self.assigns.insert(name);
        }
    }
}

/// Identifiers in a token stream, and `{name}` arguments inside its string literals.
fn token_names(tokens: TokenStream, out: &mut BTreeSet<String>) {
    for token in tokens {
        match token {
            TokenTree::Ident(i) => {
                out.insert(i.to_string());
            }
            TokenTree::Group(g) => token_names(g.stream(), out),
            TokenTree::Literal(lit) => {
                let text = lit.to_string();
                if text.starts_with('"') || text.starts_with('r') {
                    format_arguments(&text, out);
                }
            }
            TokenTree::Punct(_) => {}
        }
    }
}

/// Inline format arguments: `"{acc:.2} {n}"` uses `acc` and `n`.
fn format_arguments(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if rest.starts_with('{') {
            rest = &rest[1..];
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
        {
            out.insert(name);
        }
    }
}

#[cfg(test)]
mod tests;
