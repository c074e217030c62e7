// CPU test harness for libsemshare_plugins.so: no GPU and no TensorRT runtime needed, only the headers.
//
// Loads the library with dlopen exactly as IPluginRegistry::loadLibrary does (getCreators, setLoggerFinder),
// then drives the build-phase interface of a plugin and prints one JSON object for tests/test_plugins.py:
//
//   plugin_harness creators
//   plugin_harness <lib> check <PluginName> [--phase build|runtime] [--field name:TYPE:value]... [--shape i=d0,d1,..]...
//
// TYPE: i (kINT32), l (kINT64), f (kFLOAT32), s (kCHAR). A shape extent is an integer or a name (a symbolic,
// runtime extent such as B). "check" reports: created, log messages, core names, output shapes from
// getOutputShapes (through a minimal IExprBuilder), output types for each input type pair, the accepted
// supportsFormatCombination table, configurePlugin/onShapeChange results for concrete shapes, the serialized
// fields and whether createPlugin(kRUNTIME) from them, clone() and attachToContext() reproduce the plugin.
#include "NvInferRuntime.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cctype>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

std::string quote(std::string const& text)
{
    std::string out = "\"";
    for (char ch : text)
    {
        if (ch == '"' || ch == '\\')
        {
            out += '\\';
            out += ch;
        }
        else if (static_cast<unsigned char>(ch) < 0x20)
        {
            char buffer[8];
            std::snprintf(buffer, sizeof(buffer), "\\u%04x", ch);
            out += buffer;
        }
        else
        {
            out += ch;
        }
    }
    return out + "\"";
}

// ---- logger -----------------------------------------------------------------------------------------------------
class CapturingLogger : public ILogger
{
public:
    void log(Severity severity, char const* msg) noexcept override
    {
        messages.push_back(std::to_string(static_cast<int>(severity)) + ": " + (msg ? msg : ""));
    }
    std::vector<std::string> messages;
};

class Finder : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &logger;
    }
    CapturingLogger logger;
};

// ---- a minimal IExprBuilder: constants fold, anything involving a named extent stays symbolic -------------------
class ExprImpl : public apiv::VDimensionExpr
{
public:
    bool isConstant() const override
    {
        return text.empty();
    }
    int64_t getConstantValue() const override
    {
        return isConstant() ? value : std::numeric_limits<int64_t>::min();
    }
    bool isSizeTensor() const override
    {
        return false;
    }
    int64_t value{0};
    std::string text; // empty: constant
};

class Expr : public IDimensionExpr
{
public:
    Expr()
    {
        mImpl = &impl;
    }
    ~Expr() override = default;
    ExprImpl impl;
};

class BuilderImpl : public apiv::VExprBuilder
{
public:
    IDimensionExpr const* constant(int64_t value) override
    {
        Expr* e = make();
        e->impl.value = value;
        return e;
    }
    IDimensionExpr const* symbol(std::string const& name)
    {
        Expr* e = make();
        e->impl.text = name;
        return e;
    }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& first, IDimensionExpr const& second) override
    {
        Expr const& a = static_cast<Expr const&>(first);
        Expr const& b = static_cast<Expr const&>(second);
        static char const* const kNames[] = {"+", "*", "max", "min", "-", "==", "<", "//", "ceildiv"};
        int const index = static_cast<int>(op);
        if (index < 0 || index > 8)
        {
            return nullptr;
        }
        if (a.isConstant() && b.isConstant())
        {
            int64_t x = a.impl.value;
            int64_t y = b.impl.value;
            int64_t r = 0;
            switch (op)
            {
            case DimensionOperation::kSUM: r = x + y; break;
            case DimensionOperation::kPROD: r = x * y; break;
            case DimensionOperation::kMAX: r = x > y ? x : y; break;
            case DimensionOperation::kMIN: r = x < y ? x : y; break;
            case DimensionOperation::kSUB: r = x - y; break;
            case DimensionOperation::kEQUAL: r = x == y; break;
            case DimensionOperation::kLESS: r = x < y; break;
            case DimensionOperation::kFLOOR_DIV: r = y == 0 ? 0 : x / y - ((x % y != 0) && ((x < 0) != (y < 0))); break;
            case DimensionOperation::kCEIL_DIV: r = y == 0 ? 0 : (x + y - 1) / y; break;
            }
            return constant(r);
        }
        auto show = [](Expr const& e) { return e.isConstant() ? std::to_string(e.impl.value) : e.impl.text; };
        return symbol("(" + show(a) + " " + kNames[index] + " " + show(b) + ")");
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }

private:
    Expr* make()
    {
        mNodes.push_back(std::make_unique<Expr>());
        return mNodes.back().get();
    }
    std::vector<std::unique_ptr<Expr>> mNodes;
};

class Builder : public IExprBuilder
{
public:
    explicit Builder(BuilderImpl* impl)
    {
        mImpl = impl;
    }
    ~Builder() override = default;
};

// ---- fields -----------------------------------------------------------------------------------------------------
struct FieldSpec
{
    std::string name;
    PluginFieldType type;
    std::vector<char> data;
    int32_t length;
};

FieldSpec parseField(std::string const& spec)
{
    size_t const first = spec.find(':');
    size_t const second = spec.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos)
    {
        std::fprintf(stderr, "bad --field %s (want name:TYPE:value)\n", spec.c_str());
        std::exit(2);
    }
    FieldSpec field;
    field.name = spec.substr(0, first);
    std::string const type = spec.substr(first + 1, second - first - 1);
    std::string const value = spec.substr(second + 1);
    auto store = [&](auto v) {
        field.data.resize(sizeof(v));
        std::memcpy(field.data.data(), &v, sizeof(v));
        field.length = 1;
    };
    if (type == "i")
    {
        field.type = PluginFieldType::kINT32;
        store(static_cast<int32_t>(std::stol(value)));
    }
    else if (type == "l")
    {
        field.type = PluginFieldType::kINT64;
        store(static_cast<int64_t>(std::stoll(value)));
    }
    else if (type == "f")
    {
        field.type = PluginFieldType::kFLOAT32;
        store(std::stof(value));
    }
    else if (type == "s")
    {
        field.type = PluginFieldType::kCHAR;
        field.data.assign(value.begin(), value.end());
        field.data.push_back('\0');
        field.length = static_cast<int32_t>(value.size()); // the ONNX parser's convention: bytes without the NUL
    }
    else
    {
        std::fprintf(stderr, "bad field type %s\n", type.c_str());
        std::exit(2);
    }
    return field;
}

std::string fieldsToJson(PluginFieldCollection const* fc)
{
    if (fc == nullptr)
    {
        return "null";
    }
    std::ostringstream out;
    out << "[";
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        out << (i ? ", " : "") << "{\"name\": " << quote(f.name ? f.name : "") << ", \"type\": "
            << static_cast<int>(f.type) << ", \"length\": " << f.length << ", \"value\": ";
        if (f.data == nullptr)
            out << "null";
        else if (f.type == PluginFieldType::kINT32)
            out << *static_cast<int32_t const*>(f.data);
        else if (f.type == PluginFieldType::kFLOAT32)
            out << *static_cast<float const*>(f.data);
        else if (f.type == PluginFieldType::kCHAR)
        {
            char const* text = static_cast<char const*>(f.data);
            out << quote(std::string(text, strnlen(text, static_cast<size_t>(f.length))));
        }
        else
            out << "null";
        out << "}";
    }
    return out.str() + "]";
}

// ---- shapes -----------------------------------------------------------------------------------------------------
using ShapeSpec = std::vector<std::string>; // each extent: digits or a name

bool isConcrete(ShapeSpec const& shape)
{
    for (auto const& e : shape)
        if (e.empty() || !(std::isdigit(static_cast<unsigned char>(e[0])) || e[0] == '-'))
            return false;
    return true;
}

Dims toDims(ShapeSpec const& shape, bool unknownAsMinusOne)
{
    Dims dims{};
    dims.nbDims = static_cast<int32_t>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i)
    {
        bool const number = !shape[i].empty() && (std::isdigit(static_cast<unsigned char>(shape[i][0])) || shape[i][0] == '-');
        dims.d[i] = number ? std::stoll(shape[i]) : (unknownAsMinusOne ? -1 : 0);
    }
    return dims;
}

char const* typeName(DataType t)
{
    switch (t)
    {
    case DataType::kFLOAT: return "FLOAT";
    case DataType::kHALF: return "HALF";
    case DataType::kINT8: return "INT8";
    case DataType::kINT32: return "INT32";
    case DataType::kBF16: return "BF16";
    default: return "OTHER";
    }
}

std::string serializedText(IPluginV3* plugin)
{
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    return runtime ? fieldsToJson(runtime->getFieldsToSerialize()) : "null";
}

using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
using SetLoggerFinder = void (*)(ILoggerFinder*);

int run(int argc, char** argv)
{
    if (argc < 3)
    {
        std::fprintf(stderr, "usage: plugin_harness <lib> creators | check <PluginName> [options]\n");
        return 2;
    }
    void* handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr)
    {
        std::fprintf(stderr, "dlopen failed: %s\n", dlerror());
        return 2;
    }
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(handle, "setLoggerFinder"));
    if (getCreators == nullptr || setLoggerFinder == nullptr)
    {
        std::fprintf(stderr, "missing entry point getCreators or setLoggerFinder\n");
        return 2;
    }
    static Finder finder;
    setLoggerFinder(&finder);
    int32_t count = 0;
    IPluginCreatorInterface* const* creators = getCreators(count);
    std::string const command = argv[2];

    std::vector<IPluginCreatorV3One*> v3;
    std::ostringstream out;
    for (int32_t i = 0; i < count; ++i)
    {
        InterfaceInfo const info = creators[i]->getInterfaceInfo();
        if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0 && info.major == 1)
            v3.push_back(static_cast<IPluginCreatorV3One*>(creators[i]));
    }
    if (command == "creators")
    {
        out << "{\"count\": " << count << ", \"creators\": [";
        for (size_t i = 0; i < v3.size(); ++i)
        {
            out << (i ? ", " : "") << "{\"name\": " << quote(v3[i]->getPluginName()) << ", \"version\": "
                << quote(v3[i]->getPluginVersion()) << ", \"namespace\": " << quote(v3[i]->getPluginNamespace())
                << ", \"fields\": " << fieldsToJson(v3[i]->getFieldNames()) << "}";
        }
        out << "]}";
        std::printf("%s\n", out.str().c_str());
        return 0;
    }
    if (command != "check" || argc < 4)
    {
        std::fprintf(stderr, "unknown command\n");
        return 2;
    }
    std::string const pluginName = argv[3];
    TensorRTPhase phase = TensorRTPhase::kBUILD;
    std::vector<FieldSpec> specs;
    std::vector<ShapeSpec> shapes(2);
    for (int i = 4; i < argc; ++i)
    {
        std::string const arg = argv[i];
        if (arg == "--phase" && i + 1 < argc)
            phase = std::string(argv[++i]) == "runtime" ? TensorRTPhase::kRUNTIME : TensorRTPhase::kBUILD;
        else if (arg == "--field" && i + 1 < argc)
            specs.push_back(parseField(argv[++i]));
        else if (arg == "--shape" && i + 1 < argc)
        {
            std::string const spec = argv[++i];
            size_t const eq = spec.find('=');
            size_t const index = std::stoul(spec.substr(0, eq));
            std::stringstream extents(spec.substr(eq + 1));
            std::string extent;
            if (index >= shapes.size())
                shapes.resize(index + 1);
            while (std::getline(extents, extent, ','))
                shapes[index].push_back(extent);
        }
        else
        {
            std::fprintf(stderr, "bad argument %s\n", arg.c_str());
            return 2;
        }
    }
    IPluginCreatorV3One* creator = nullptr;
    for (auto* c : v3)
        if (pluginName == c->getPluginName())
            creator = c;
    if (creator == nullptr)
    {
        std::fprintf(stderr, "no creator named %s\n", pluginName.c_str());
        return 2;
    }
    std::vector<PluginField> fields;
    for (auto const& s : specs)
        fields.emplace_back(s.name.c_str(), s.data.data(), s.type, s.length);
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    std::unique_ptr<IPluginV3> plugin(creator->createPlugin(pluginName.c_str(), &fc, phase));

    out << "{\"created\": " << (plugin ? "true" : "false") << ", \"create_log\": [";
    for (size_t i = 0; i < finder.logger.messages.size(); ++i)
        out << (i ? ", " : "") << quote(finder.logger.messages[i]);
    out << "]";
    if (plugin)
    {
        auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
        auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
        auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        out << ", \"capabilities\": " << ((core && build && runtime) ? "true" : "false");
        out << ", \"core\": [" << quote(core->getPluginName()) << ", " << quote(core->getPluginVersion()) << ", "
            << quote(core->getPluginNamespace()) << "]";
        out << ", \"interfaces\": [" << quote(core->getInterfaceInfo().kind) << ", " << quote(build->getInterfaceInfo().kind)
            << ", " << quote(runtime->getInterfaceInfo().kind) << "]";
        out << ", \"nb_outputs\": " << build->getNbOutputs();

        // output types for every pair of input types
        DataType const types[] = {DataType::kFLOAT, DataType::kHALF, DataType::kINT8, DataType::kINT32, DataType::kBF16};
        out << ", \"output_types\": {";
        bool firstEntry = true;
        for (DataType a : types)
            for (DataType b : types)
            {
                DataType inputs[2] = {a, b};
                DataType output = DataType::kBOOL;
                int32_t const status = build->getOutputDataTypes(&output, 1, inputs, 2);
                out << (firstEntry ? "" : ", ") << quote(std::string(typeName(a)) + "," + typeName(b)) << ": "
                    << (status == 0 ? quote(typeName(output)) : "null");
                firstEntry = false;
            }
        out << "}";

        // supportsFormatCombination: every full combination TensorRT could try, position by position
        out << ", \"formats\": [";
        firstEntry = true;
        for (DataType a : types)
            for (DataType b : types)
                for (DataType c : types)
                {
                    DynamicPluginTensorDesc io[3]{};
                    DataType combo[3] = {a, b, c};
                    bool ok = true;
                    for (int32_t pos = 0; pos < 3 && ok; ++pos)
                    {
                        io[pos].desc.type = combo[pos];
                        io[pos].desc.format = TensorFormat::kLINEAR;
                        ok = build->supportsFormatCombination(pos, io, 2, 1);
                    }
                    if (ok)
                    {
                        out << (firstEntry ? "" : ", ") << "[" << quote(typeName(a)) << ", " << quote(typeName(b))
                            << ", " << quote(typeName(c)) << "]";
                        firstEntry = false;
                    }
                }
        out << "]";
        {
            DynamicPluginTensorDesc io[3]{};
            io[0].desc.type = DataType::kHALF;
            io[0].desc.format = TensorFormat::kCHW32;
            out << ", \"nonlinear_accepted\": " << (build->supportsFormatCombination(0, io, 2, 1) ? "true" : "false");
        }

        // output shapes through the minimal IExprBuilder
        if (!shapes[0].empty())
        {
            BuilderImpl impl;
            Builder builder(&impl);
            std::vector<DimsExprs> inputs(shapes.size());
            for (size_t i = 0; i < shapes.size(); ++i)
            {
                inputs[i].nbDims = static_cast<int32_t>(shapes[i].size());
                for (size_t j = 0; j < shapes[i].size(); ++j)
                {
                    bool const number = std::isdigit(static_cast<unsigned char>(shapes[i][j][0]));
                    inputs[i].d[j] = number ? impl.constant(std::stoll(shapes[i][j])) : impl.symbol(shapes[i][j]);
                }
            }
            DimsExprs output{};
            int32_t const status = build->getOutputShapes(
                inputs.data(), static_cast<int32_t>(inputs.size()), nullptr, 0, &output, 1, builder);
            out << ", \"output_shape\": ";
            if (status != 0)
                out << "null";
            else
            {
                out << "[";
                for (int32_t j = 0; j < output.nbDims; ++j)
                {
                    auto const* e = static_cast<Expr const*>(output.d[j]);
                    out << (j ? ", " : "") << (e->isConstant() ? std::to_string(e->getConstantValue()) : quote(e->impl.text));
                }
                out << "]";
            }

            // configurePlugin (unknown extents as -1) and, for concrete shapes, onShapeChange
            DynamicPluginTensorDesc in[8]{};
            DynamicPluginTensorDesc outDesc{};
            for (size_t i = 0; i < shapes.size() && i < 8; ++i)
            {
                in[i].desc.dims = toDims(shapes[i], true);
                in[i].desc.type = DataType::kFLOAT;
                in[i].desc.format = TensorFormat::kLINEAR;
            }
            out << ", \"configure\": " << build->configurePlugin(in, static_cast<int32_t>(shapes.size()), &outDesc, 1);
            bool concrete = true;
            for (auto const& s : shapes)
                concrete = concrete && isConcrete(s);
            if (concrete)
            {
                PluginTensorDesc rin[8]{};
                PluginTensorDesc rout{};
                for (size_t i = 0; i < shapes.size() && i < 8; ++i)
                    rin[i] = in[i].desc;
                out << ", \"shape_change\": " << runtime->onShapeChange(rin, static_cast<int32_t>(shapes.size()), &rout, 1);
            }
        }

        // serialization round trip, clone, attachToContext
        std::string const serialized = serializedText(plugin.get());
        out << ", \"serialized\": " << serialized;
        PluginFieldCollection const* toSerialize = runtime->getFieldsToSerialize();
        std::unique_ptr<IPluginV3> restored(creator->createPlugin(pluginName.c_str(), toSerialize, TensorRTPhase::kRUNTIME));
        out << ", \"roundtrip_equal\": " << ((restored && serializedText(restored.get()) == serialized) ? "true" : "false");
        std::unique_ptr<IPluginV3> cloned(plugin->clone());
        std::unique_ptr<IPluginV3> attached(runtime->attachToContext(nullptr));
        plugin.reset(); // clones must be full copies: they outlive the original
        out << ", \"clone_equal\": " << ((cloned && serializedText(cloned.get()) == serialized) ? "true" : "false");
        out << ", \"attach_equal\": " << ((attached && serializedText(attached.get()) == serialized) ? "true" : "false");
    }
    out << ", \"log\": [";
    for (size_t i = 0; i < finder.logger.messages.size(); ++i)
        out << (i ? ", " : "") << quote(finder.logger.messages[i]);
    out << "]}";
    std::printf("%s\n", out.str().c_str());
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    return run(argc, argv);
}
