"""Evaluates the LaTeX that `evomal export --to latex` writes, as mathematics, at a point: an
independent reading of the formula (precedence, parentheses, weights) for check.py."""

import math
import re

NUMBER = re.compile(r"-?\d+(\.\d+)?(e-?\d+)?")


class Formula:
    def __init__(self, text):
        self.s = text.strip()
        self.i = 0

    def eat(self, token):
        if self.s.startswith(token, self.i):
            self.i += len(token)
            return True
        return False

    def expect(self, token):
        if not self.eat(token):
            raise ValueError(f"expected {token!r} at {self.i}: {self.s[self.i:self.i + 30]!r}")

    def evaluate(self, y, yhat):
        self.y, self.yhat, self.i = y, yhat, 0
        v = self.expr()
        if self.i != len(self.s):
            raise ValueError(f"trailing text at {self.i}: {self.s[self.i:]!r}")
        return v

    def expr(self):
        v = self.term()
        while True:
            if self.eat(" + "):
                v += self.term()
            elif self.eat(" - "):
                v -= self.term()
            else:
                return v

    def term(self):
        v = self.factor()
        while self.eat(" \\cdot "):
            v *= self.factor()
        return v

    def factor(self):
        v = self.primary()
        while self.eat("^{2}"):
            v = v * v
        return v

    def group(self, close):
        v = self.expr()
        self.expect(close)
        return v

    def primary(self):
        m = NUMBER.match(self.s, self.i)
        if m:
            self.i = m.end()
            return float(m.group())
        if self.eat("\\hat{y}"):
            return self.yhat
        if self.eat("y"):
            return self.y
        if self.eat("\\left("):
            return self.group("\\right)")
        if self.eat("\\left|"):
            return abs(self.group("\\right|"))
        if self.eat("\\log\\left|"):
            return math.log(max(abs(self.group("\\right|")), 1e-7))
        if self.eat("\\sqrt{\\left|"):
            v = self.group("\\right|")
            self.expect("}")
            return math.sqrt(max(abs(v), 1e-7))
        if self.eat("\\sqrt{"):
            return math.sqrt(self.group("}"))
        if self.eat("\\frac{"):
            num = self.group("}")
            self.expect("{")
            return num / self.group("}")
        for name, f in [("\\tanh", math.tanh), ("\\operatorname{sign}", sign)]:
            if self.eat(name + "\\left("):
                return f(self.group("\\right)"))
        for name, f in [("\\min", min), ("\\max", max)]:
            if self.eat(name + "\\left("):
                a = self.expr()
                self.expect(", ")
                return f(a, self.group("\\right)"))
        raise ValueError(f"unknown term at {self.i}: {self.s[self.i:self.i + 30]!r}")


def sign(x):
    return 1.0 if x > 0 else -1.0 if x < 0 else x
