# The differential corpus (cases.json) that tests/workflow_differential.rs runs through
# Careline and aws-local-stepfunctions: edit here and run `python3 tests/asl/cases.py`.
# A case that Careline answers differently on purpose says how and why (KNOWN, below).
import json
import os
ARN = "arn:aws:lambda:us-east-1:123456789012:function:"
def task(name, **kw):
    d = {"Type": "Task", "Resource": ARN + name}
    d.update(kw)
    return d
cases = []
def case(name, definition, input, **extra):
    c = {"name": name, "definition": definition, "input": input}
    c.update(extra)
    cases.append(c)
def m(start, states, **kw):
    d = {"StartAt": start, "States": states}
    d.update(kw)
    return d

# Input and output processing.
case("pass-result-path-output-path",
     m("P", {"P": {"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.r", "OutputPath": "$.r", "End": True}}),
     {"a": 1})
case("pass-parameters-paths-and-literals",
     m("P", {"P": {"Type": "Pass", "Parameters": {"lit": "v", "n": 3, "from.$": "$.a.b", "list.$": "$.l[1]", "nested": {"deep.$": "$.a"}}, "End": True}}),
     {"a": {"b": "B"}, "l": [10, 20, 30]})
case("input-path-then-result-path",
     m("P", {"P": {"Type": "Pass", "InputPath": "$.inner", "ResultPath": "$.copy", "End": True}}),
     {"inner": {"k": "v"}, "other": 1})
case("result-path-null-keeps-input",
     m("T", {"T": task("Work", ResultPath=None, End=True)}),
     {"keep": True})
case("output-path-null-empties",
     m("P", {"P": {"Type": "Pass", "OutputPath": None, "End": True}}),
     {"gone": 1})
case("task-parameters-result-selector",
     m("T", {"T": task("Work", Parameters={"patient.$": "$.id", "fixed": 1}, ResultSelector={"who.$": "$.got.patient", "task.$": "$.task"}, ResultPath="$.result", End=True)}),
     {"id": "p-1"})
case("result-path-creates-nested-fields",
     m("P", {"P": {"Type": "Pass", "Result": "deep", "ResultPath": "$.a.b.c", "End": True}}),
     {"a": {"x": 1}})

# Choice.
choice_input = {"n": 5, "f": 2.5, "s": "beta", "t": "2026-12-06T09:00:00Z", "b": True, "other": 5, "nul": None, "list": [1]}
rules = [
    ("numeric-equals", {"Variable": "$.n", "NumericEquals": 5}),
    ("numeric-less-than-float", {"Variable": "$.f", "NumericLessThan": 3}),
    ("numeric-gte-path", {"Variable": "$.n", "NumericGreaterThanEqualsPath": "$.other"}),
    ("string-equals", {"Variable": "$.s", "StringEquals": "beta"}),
    ("string-less-than", {"Variable": "$.s", "StringLessThan": "gamma"}),
    ("string-greater-than-equals", {"Variable": "$.s", "StringGreaterThanEquals": "beta"}),
    ("string-matches", {"Variable": "$.s", "StringMatches": "b*a"}),
    ("string-matches-no", {"Variable": "$.s", "StringMatches": "a*"}),
    ("timestamp-greater", {"Variable": "$.t", "TimestampGreaterThan": "2026-12-01T00:00:00Z"}),
    ("timestamp-equals-other-zone", {"Variable": "$.t", "TimestampEquals": "2026-12-06T18:00:00+09:00"}),
    ("boolean-equals", {"Variable": "$.b", "BooleanEquals": True}),
    ("is-null", {"Variable": "$.nul", "IsNull": True}),
    ("is-present-missing", {"Variable": "$.missing", "IsPresent": False}),
    ("is-numeric-on-string", {"Variable": "$.s", "IsNumeric": True}),
    ("is-string", {"Variable": "$.s", "IsString": True}),
    ("is-boolean", {"Variable": "$.b", "IsBoolean": True}),
    ("is-timestamp", {"Variable": "$.t", "IsTimestamp": True}),
    ("and", {"And": [{"Variable": "$.n", "NumericGreaterThan": 1}, {"Variable": "$.s", "StringEquals": "beta"}]}),
    ("or", {"Or": [{"Variable": "$.n", "NumericGreaterThan": 10}, {"Variable": "$.b", "BooleanEquals": False}]}),
    ("not", {"Not": {"Variable": "$.n", "NumericEquals": 4}}),
    ("string-equals-on-number", {"Variable": "$.n", "StringEquals": "5"}),
]
for name, rule in rules:
    r = dict(rule); r["Next"] = "Yes"
    case("choice-" + name,
         m("C", {"C": {"Type": "Choice", "Choices": [r], "Default": "No"},
                 "Yes": {"Type": "Pass", "Result": "yes", "End": True},
                 "No": {"Type": "Pass", "Result": "no", "End": True}}),
         choice_input)
case("choice-no-match-no-default",
     m("C", {"C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "Y"}]},
             "Y": {"Type": "Succeed"}}),
     {"n": 2})
case("choice-output-path",
     m("C", {"C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "Y"}], "Default": "Y", "OutputPath": "$.keep"},
             "Y": {"Type": "Succeed"}}),
     {"n": 2, "keep": {"k": 1}})
case("choice-missing-variable",
     m("C", {"C": {"Type": "Choice", "Choices": [{"Variable": "$.missing", "NumericEquals": 1, "Next": "Y"}], "Default": "N"},
             "Y": {"Type": "Pass", "Result": "yes", "End": True},
             "N": {"Type": "Pass", "Result": "no", "End": True}}),
     {"n": 2})

# Errors: Retry, Catch, Fail.
case("retry-then-succeed",
     m("T", {"T": task("Call", Retry=[{"ErrorEquals": ["Busy"], "MaxAttempts": 2}], End=True)}),
     {"fail": "Busy", "fail_times": 2})
case("retry-exhausted-fails",
     m("T", {"T": task("Call", Retry=[{"ErrorEquals": ["Busy"], "MaxAttempts": 2}], End=True)}),
     {"fail": "Busy", "fail_times": 3})
case("retry-max-attempts-zero",
     m("T", {"T": task("Call", Retry=[{"ErrorEquals": ["Busy"], "MaxAttempts": 0}], End=True)}),
     {"fail": "Busy", "fail_times": 1})
case("retry-first-matching-rule-only",
     m("T", {"T": task("Call", Retry=[{"ErrorEquals": ["Other"], "MaxAttempts": 5}, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}], End=True)}),
     {"fail": "Busy", "fail_times": 2})
case("catch-without-result-path-replaces-input",
     m("T", {"T": task("Call", Catch=[{"ErrorEquals": ["Busy"], "Next": "C"}], End=True),
             "C": {"Type": "Pass", "End": True}}),
     {"fail": "Busy"})
case("catch-result-path-keeps-input",
     m("T", {"T": task("Call", Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "C"}], End=True),
             "C": {"Type": "Pass", "End": True}}),
     {"fail": "NoAnswer"})
case("catch-task-failed-matches-any-task-error",
     m("T", {"T": task("Call", Catch=[{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.e", "Next": "C"}], End=True),
             "C": {"Type": "Pass", "End": True}}),
     {"fail": "Whatever"})
case("retry-then-catch",
     m("T", {"T": task("Call", Retry=[{"ErrorEquals": ["Busy"], "MaxAttempts": 1}],
                       Catch=[{"ErrorEquals": ["Busy"], "ResultPath": "$.e", "Next": "C"}], End=True),
             "C": {"Type": "Pass", "End": True}}),
     {"fail": "Busy"})
case("fail-state-error-and-cause",
     m("F", {"F": {"Type": "Fail", "Error": "PatientUnreachable", "Cause": "no answer three times"}}),
     {})
case("fail-state-paths",
     m("F", {"F": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}}),
     {"e": "Dynamic", "c": "from the input"})
case("succeed-output-path",
     m("S", {"S": {"Type": "Succeed", "OutputPath": "$.a"}}),
     {"a": [1, 2]})
case("runtime-error-is-not-caught-by-states-all",
     m("P", {"P": {"Type": "Pass", "InputPath": "$.missing", "Next": "Q"},
             "Q": {"Type": "Succeed"}}),
     {"a": 1})
case("runtime-error-in-a-task-is-not-caught",
     m("T", {"T": task("Call", Parameters={"x.$": "$.missing"}, Catch=[{"ErrorEquals": ["States.ALL"], "Next": "C"}], End=True),
             "C": {"Type": "Pass", "Result": "caught", "End": True}}),
     {"a": 1})

# Wait.
case("wait-seconds-path-then-pass",
     m("W", {"W": {"Type": "Wait", "SecondsPath": "$.s", "Next": "P"},
             "P": {"Type": "Pass", "End": True}}),
     {"s": 3})
case("wait-timestamp-in-the-past",
     m("W", {"W": {"Type": "Wait", "Timestamp": "2020-01-01T00:00:00Z", "End": True}}),
     {"x": 1})

# Parallel.
case("parallel-results-in-branch-order",
     m("P", {"P": {"Type": "Parallel", "ResultPath": "$.r", "End": True, "Branches": [
         m("A", {"A": task("Notify", End=True)}),
         m("B", {"B": {"Type": "Pass", "Result": "b", "End": True}}),
         m("C", {"C": {"Type": "Wait", "Seconds": 1, "Next": "C2"}, "C2": task("Refill", End=True)})]}}),
     {"id": 1})
case("parallel-parameters-and-result-selector",
     m("P", {"P": {"Type": "Parallel", "Parameters": {"v.$": "$.v"}, "ResultSelector": {"first.$": "$[0]", "n.$": "States.ArrayLength($)"}, "End": True, "Branches": [
         m("A", {"A": {"Type": "Pass", "End": True}}),
         m("B", {"B": {"Type": "Pass", "Result": 2, "End": True}})]}}),
     {"v": "x", "other": 1})
case("parallel-branch-fails-catch",
     m("P", {"P": {"Type": "Parallel", "End": True, "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.e", "Next": "C"}], "Branches": [
         m("A", {"A": task("Work", End=True)}),
         m("B", {"B": {"Type": "Fail", "Error": "BranchBroke", "Cause": "b"}})]},
             "C": {"Type": "Pass", "End": True}}),
     {"id": 1})
case("parallel-branch-fails-uncaught",
     m("P", {"P": {"Type": "Parallel", "End": True, "Branches": [
         m("A", {"A": task("Work", End=True)}),
         m("B", {"B": task("Other", Parameters={"fail": "Down"}, End=True)})]}}),
     {"id": 1})
case("parallel-retried-whole",
     m("P", {"P": {"Type": "Parallel", "End": True, "Retry": [{"ErrorEquals": ["Busy"], "MaxAttempts": 2}], "Branches": [
         m("A", {"A": task("Work", End=True)}),
         m("B", {"B": task("Flaky", End=True)})]}}),
     {"fail": "Busy", "fail_times": 2})
case("parallel-nested",
     m("P", {"P": {"Type": "Parallel", "End": True, "Branches": [
         m("Inner", {"Inner": {"Type": "Parallel", "End": True, "Branches": [
             m("X", {"X": {"Type": "Pass", "Result": "x", "End": True}}),
             m("Y", {"Y": {"Type": "Pass", "Result": "y", "End": True}})]}}),
         m("Z", {"Z": {"Type": "Pass", "Result": "z", "End": True}})]}}),
     {})

# Map.
case("map-items-path-item-selector",
     m("M", {"M": {"Type": "Map", "ItemsPath": "$.patients", "ItemSelector": {"id.$": "$$.Map.Item.Value.id", "i.$": "$$.Map.Item.Index", "msg.$": "$.msg"}, "ResultPath": "$.calls", "End": True,
                   "ItemProcessor": m("Call", {"Call": task("Call", End=True)})}}),
     {"msg": "hello", "patients": [{"id": "a"}, {"id": "b"}, {"id": "c"}]})
case("map-legacy-iterator-and-parameters",
     m("M", {"M": {"Type": "Map", "Parameters": {"v.$": "$$.Map.Item.Value"}, "End": True,
                   "Iterator": m("P", {"P": {"Type": "Pass", "End": True}})}}),
     [1, 2, 3])
case("map-max-concurrency-one",
     m("M", {"M": {"Type": "Map", "MaxConcurrency": 1, "End": True,
                   "ItemProcessor": m("T", {"T": task("Call", End=True)})}}),
     ["x", "y", "z"])
case("map-empty",
     m("M", {"M": {"Type": "Map", "ResultPath": "$.out", "ItemsPath": "$.items", "End": True,
                   "ItemProcessor": m("T", {"T": task("Call", End=True)})}}),
     {"items": []})
case("map-iteration-fails",
     m("M", {"M": {"Type": "Map", "End": True,
                   "ItemProcessor": m("T", {"T": task("Call", End=True)})}}),
     [{"ok": 1}, {"fail": "Unreachable"}])
case("map-iteration-fails-caught",
     m("M", {"M": {"Type": "Map", "End": True, "Catch": [{"ErrorEquals": ["Unreachable"], "ResultPath": "$.e", "Next": "C"}],
                   "ItemsPath": "$.items",
                   "ItemProcessor": m("T", {"T": task("Call", End=True)})},
             "C": {"Type": "Pass", "End": True}}),
     {"items": [{"ok": 1}, {"fail": "Unreachable"}]})
case("map-over-a-non-array",
     m("M", {"M": {"Type": "Map", "ItemsPath": "$.items", "End": True,
                   "ItemProcessor": m("T", {"T": {"Type": "Pass", "End": True}})}}),
     {"items": "abc"})
case("map-in-map",
     m("Outer", {"Outer": {"Type": "Map", "End": True,
                   "ItemProcessor": m("Inner", {"Inner": {"Type": "Map", "End": True, "ItemSelector": {"x.$": "$$.Map.Item.Value"},
                        "ItemProcessor": m("Leaf", {"Leaf": task("Leaf", End=True)})}})}}),
     [[1, 2], [3]])
case("map-retry-inside-iteration",
     m("M", {"M": {"Type": "Map", "End": True,
                   "ItemProcessor": m("T", {"T": task("Call", Retry=[{"ErrorEquals": ["Busy"], "MaxAttempts": 3}], End=True)})}}),
     [{"fail": "Busy", "fail_times": 1}, {"fail": "Busy", "fail_times": 2}, {"n": 3}])

# Intrinsic functions.
intrinsics = {
    "format": "States.Format('Hello {}, you are {} years old ({})', $.name, $.age, $.ok)",
    "string-to-json": "States.StringToJson($.json)",
    "json-to-string": "States.JsonToString($.obj)",
    "array": "States.Array($.name, $.age, 'lit', 15)",
    "array-partition": "States.ArrayPartition($.nums, 2)",
    "array-contains": "States.ArrayContains($.nums, 3)",
    "array-range": "States.ArrayRange(1, 9, 2)",
    "array-get-item": "States.ArrayGetItem($.nums, 1)",
    "array-length": "States.ArrayLength($.nums)",
    "array-unique": "States.ArrayUnique($.dups)",
    "base64-encode": "States.Base64Encode($.name)",
    "base64-decode": "States.Base64Decode('SGVsbG8gd29ybGQ=')",
    "hash-sha256": "States.Hash($.name, 'SHA-256')",
    "hash-md5": "States.Hash($.name, 'MD5')",
    "json-merge": "States.JsonMerge($.obj, $.obj2, false)",
    "math-add": "States.MathAdd($.age, -7)",
    "string-split": "States.StringSplit($.csv, ',')",
    "nested": "States.ArrayLength(States.StringSplit($.csv, ','))",
}
iin = {"name": "Aiko", "age": 47, "ok": True, "json": "{\"a\": [1, 2]}", "obj": {"k": "v", "n": 1},
       "obj2": {"n": 2, "m": 3}, "nums": [1, 2, 3, 4, 5], "dups": [1, 2, 1, "a", "a"], "csv": "a,b,,c"}
for name, expr in intrinsics.items():
    case("intrinsic-" + name,
         m("P", {"P": {"Type": "Pass", "Parameters": {"v.$": expr}, "End": True}}),
         iin)
case("intrinsic-failure-caught",
     m("P", {"P": {"Type": "Pass", "Parameters": {"v.$": "States.ArrayGetItem($.nums, 10)"}, "Next": "S"},
             "S": {"Type": "Succeed"}}),
     iin)

KNOWN = {
    "choice-is-present-missing": (
        {"status": "SUCCEEDED", "output": "yes"},
        {"status": "SUCCEEDED", "output": "no"},
        "ASL: `IsPresent: false` holds when the variable is absent; aws-local-stepfunctions 3.0.0 "
        "reads any `IsPresent: false` (and `IsNull: false`, ...) as never holding"),
    "choice-missing-variable": (
        {"status": "SUCCEEDED", "output": "no"},
        {"status": "FAILED", "error": "States.Runtime"},
        "Step Functions fails the execution when a Choice rule's Variable finds nothing; Careline "
        "reads the rule as false, so the Default is taken (docs/workflows.md: the safer reading "
        "for a clinical workflow; IsPresent tests for it explicitly)"),
    "intrinsic-string-split": (
        {"status": "SUCCEEDED", "output": {"v": ["a", "b", "c"]}},
        {"status": "SUCCEEDED", "output": {"v": ["a", "b", "", "c"]}},
        "Step Functions drops the empty strings between two delimiters (LocalStack matched it "
        "to AWS's own answers in localstack/localstack#9749); aws-local-stepfunctions keeps them"),
    "intrinsic-nested": (
        {"status": "SUCCEEDED", "output": {"v": 3}},
        {"status": "SUCCEEDED", "output": {"v": 4}},
        "the same StringSplit difference, counted"),
    "intrinsic-failure-caught": (
        {"status": "FAILED", "error": "States.IntrinsicFailure"},
        {"status": "SUCCEEDED", "output": {"v": None}},
        "an index past the end: aws-local-stepfunctions gives null; Careline fails the state "
        "with States.IntrinsicFailure (which Retry and Catch can name) rather than pass a null "
        "on to the next step"),
}
for c in cases:
    if c["name"] in KNOWN:
        ours, theirs, why = KNOWN.pop(c["name"])
        c["careline"], c["aws"], c["why"] = ours, theirs, why
assert not KNOWN, KNOWN

json.dump(cases, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cases.json'), 'w'), indent=1, ensure_ascii=False)
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cases.json'), 'a').write('\n')
print(len(cases))
